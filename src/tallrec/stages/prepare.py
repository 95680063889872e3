"""prepare: one domain's raw files -> data/processed/<domain>/{train,valid,test}.parquet + report.json."""

from __future__ import annotations

from tallrec.config import Params


def main(params: Params, domain: str) -> str:
    from tallrec.data import prepare, verify_raw

    verify_raw(domain)  # refuses an unknown domain first (data.check_domain)
    report = prepare(domain, params)
    return f"{domain}: {report.get('split_rows', report)}"


if __name__ == "__main__":
    from tallrec.stages import run

    run(main, str)
