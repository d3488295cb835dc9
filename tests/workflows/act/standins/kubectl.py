"""Stand-in for `kubectl` (no cluster here): records every call in $MLGATE_ACT_KUBECTL
(calls.jsonl, the applied manifests in kubectl-applied.yaml). Docker is real (Road.docker).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HOME = Path(os.environ["MLGATE_ACT_KUBECTL"])


# The namespaces a team creates once (mlgate never creates one): params' defaults, or the
# harness's MLGATE_ACT_K8S_NAMESPACES (space-separated)
NAMESPACES = os.environ.get("MLGATE_ACT_K8S_NAMESPACES", "ml-staging ml-production").split()


def kubectl(args: list[str]) -> None:
    if args[:2] == ["get", "namespace"] and len(args) >= 3:
        # as kubectl: the namespace by name, or NotFound (exit 1)
        if args[2] not in NAMESPACES:
            print(
                f'Error from server (NotFound): namespaces "{args[2]}" not found', file=sys.stderr
            )
            sys.exit(1)
        print(f"namespace/{args[2]}" if args[3:5] == ["-o", "name"] else args[2])
    elif args[:2] == ["apply", "-f"]:
        manifests = sys.stdin.read()
        (HOME / "kubectl-applied.yaml").open("a").write(manifests + "\n---\n")
        print("deployment.apps/model configured")
    elif args[:2] == ["rollout", "status"]:
        print(f"{args[2]} successfully rolled out")
    else:
        print(f"kubectl stand-in: `kubectl {' '.join(args)}` is not played here", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    HOME.mkdir(parents=True, exist_ok=True)
    with (HOME / "calls.jsonl").open("a") as fh:
        fh.write(json.dumps(["kubectl", *sys.argv[1:]]) + "\n")
    kubectl(sys.argv[1:])
