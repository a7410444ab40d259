"""`make audit-deps`: pip-audit over every pinned package (tests/requirements.txt holds the runtime
requirements too), with a summary that says plainly how much could be checked.

Exit 1 when a known vulnerability is found. A package that the vulnerability service could not
be asked about (offline machine, a mirror without PyPI's per-release JSON API) is counted and
listed, not hidden; with AUDIT_STRICT=1 that fails the run too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main() -> int:
    venv_bin = os.path.dirname(sys.executable)
    command = [
        os.path.join(venv_bin, "pip-audit"), "--disable-pip", "--require-hashes",
        "--progress-spinner", "off", "--format", "json", "-r", "tests/requirements.txt",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        sys.stderr.write(done.stderr)
        print("audit-deps: pip-audit gave no report", file=sys.stderr)
        return 2
    found = [(d["name"], d["version"], v["id"]) for d in report["dependencies"]
             for v in d.get("vulns", [])]
    skipped = [d for d in report["dependencies"] if "skip_reason" in d]
    audited = len(report["dependencies"]) - len(skipped)
    for name, version, vuln in found:
        print(f"VULNERABLE {name} {version}: {vuln}")
    print(f"audit-deps: {audited} packages audited, {len(found)} known vulnerabilities, "
          f"{len(skipped)} could not be audited")
    if skipped:
        reasons = sorted({d["skip_reason"].split(":")[0] for d in skipped})
        print("  not audited (" + "; ".join(reasons) + "): "
              + ", ".join(d["name"] for d in skipped))
    if found:
        return 1
    if skipped and os.environ.get("AUDIT_STRICT") == "1":
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
