"""`liaison bench attachments`: move large attachments through a lab; measure memory and speed.

Starts a lab (real nats-server, gateway and office node processes), then for
each size uploads a generated attachment at the first office, sends it to the
second, waits for the delivery and downloads it to a file there, checking the
SHA-256. For the sender node, the recipient node and the gateway it reports
the resident set before the run and its peak during the run (Linux
``/proc/<pid>/status`` VmRSS and VmHWM, the peak reset through
``/proc/<pid>/clear_refs`` before each size), and the upload, download and
end-to-end rates in MiB/s. Bounded memory shows as peaks that do not grow
with the size.

It does not measure the client process, nor anything but Linux.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from exchange.client.sdk import Client
from liaison.lab.lab import DEFAULT_INVENTORY, Lab

__all__ = ["format_table", "run_attachments"]

MIB: Final = 1 << 20
DEFAULT_SIZES_MIB: Final = (50, 200)


class _Generated:
    """A read-only file of pseudo-random bytes made as it is read (SHA-256 counter stream)."""

    def __init__(self, size: int, name: str) -> None:
        self.name = name
        self._left = size
        self._block = hashlib.sha256(name.encode()).digest() * (MIB // 32)
        self._counter = 0
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        self._counter += 1
        data = (self._counter.to_bytes(8, "big") + self._block)[:n]
        data += bytes(n - len(data))
        self._left -= n
        self.sha256.update(data)
        return data


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"no {field} for pid {pid}")


def _reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _file_sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(MIB):
            h.update(block)
    return h.digest()


def _one(lab: Lab, sender: str, recipient: str, size_mib: int, work: Path) -> dict[str, Any]:
    pids = {
        "sender_node": lab.nodes[sender].pid,
        "recipient_node": lab.nodes[recipient].pid,
        "gateway": lab.nodes["gateway"].pid,
    }
    before = {}
    for role, pid in pids.items():
        assert pid is not None
        _reset_peak(pid)
        before[role] = _status_kib(pid, "VmRSS")
    size = size_mib * MIB
    source = _Generated(size, f"bench-{size_mib}mib.bin")
    target = work / f"received-{size_mib}.bin"
    with Client.from_lab(lab.root, sender) as tx, Client.from_lab(lab.root, recipient) as rx:
        t0 = time.perf_counter()
        ref = tx.upload_attachment(source)
        t1 = time.perf_counter()
        sent = tx.send_case_message([recipient], case_id="BENCH-ATT", text="bench", attachments=[ref.id])
        for delivery in rx.subscribe(wait_s=60):
            if delivery.message_id == sent.message_id:
                break
        else:
            raise RuntimeError("the benchmark message was not delivered")
        t2 = time.perf_counter()
        rx.download_attachment(sent.message_id, 0, to=target)
        t3 = time.perf_counter()
    ok = _file_sha256(target) == source.sha256.digest() == ref.sha256
    target.unlink()
    processes = {
        role: {
            "rss_before_mib": before[role] / 1024,
            "peak_rss_mib": _status_kib(pid, "VmHWM") / 1024,  # type: ignore[arg-type]
        }
        for role, pid in pids.items()
    }
    return {
        "size_mib": size_mib,
        "sha256_verified": ok,
        "upload_mib_s": size_mib / (t1 - t0),
        "download_mib_s": size_mib / (t3 - t2),
        "end_to_end_mib_s": size_mib / (t3 - t0),
        "seconds": {"upload": t1 - t0, "send_to_delivery": t2 - t1, "download": t3 - t2},
        "processes": processes,
    }


def run_attachments(
    sizes_mib: tuple[int, ...] = DEFAULT_SIZES_MIB, lab_dir: Path | None = None
) -> list[dict[str, Any]]:
    with contextlib.ExitStack() as stack:
        root = lab_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="liaison-bench-att-")))
        lab = stack.enter_context(Lab(root, inventory=DEFAULT_INVENTORY))
        offices = [name for name, node in lab.nodes.items() if node.role == "office"]
        sender, recipient = offices[0], offices[1]
        work = root / "bench-files"
        work.mkdir(exist_ok=True)
        return [_one(lab, sender, recipient, size, work) for size in sizes_mib]


def format_table(runs: list[dict[str, Any]]) -> str:
    lines = [
        f"{'size':>8}  {'upload':>9}  {'download':>9}  {'e2e':>9}  "
        f"{'sender peak':>12}  {'recipient peak':>14}  {'gateway peak':>12}  sha256"
    ]
    for r in runs:
        p = r["processes"]

        def peak(role: str, p: dict[str, Any] = p) -> str:
            return f"{p[role]['peak_rss_mib']:.0f} MiB"

        lines.append(
            f"{r['size_mib']:>4} MiB  {r['upload_mib_s']:>5.0f} MiB/s  {r['download_mib_s']:>5.0f} MiB/s  "
            f"{r['end_to_end_mib_s']:>5.0f} MiB/s  {peak('sender_node'):>12}  {peak('recipient_node'):>14}  "
            f"{peak('gateway'):>12}  {'ok' if r['sha256_verified'] else 'MISMATCH'}"
        )
    return "\n".join(lines)
