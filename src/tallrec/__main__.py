from tallrec.launch import main

main()
