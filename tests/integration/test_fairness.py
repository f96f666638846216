"""A flood from one office cannot starve the others at the gateway.

The directory of this lab limits each sender to 25 frames/s at the gateway.
One office floods; another sends a few messages after the flood is queued:
those arrive long before the flood is through, and nothing is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.client.sdk import Client
from liaison.lab.lab import Lab

INVENTORY = Path(__file__).parent / "data" / "inventory_ratelimited.toml"
RU, TJ, MIG = "ru-mvd-dushanbe", "tj-mvd-moscow", "tj-migration-moscow"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with Lab(tmp_path / "lab", inventory=INVENTORY) as lab:
        yield lab


@pytest.mark.slow
def test_flood_from_one_office_does_not_starve_another(lab: Lab) -> None:
    # Both offices' traffic waits in JetStream while the gateway is down, the flood first;
    # then the gateway comes back and must not serve the other office only after the flood.
    lab.gateway.stop()
    with Client.from_lab(lab.root, RU) as ru, Client.from_lab(lab.root, MIG) as mig:
        flood = [ru.send_case_message([TJ], case_id="FLOOD", text=f"{i}").message_id for i in range(150)]
        time.sleep(1.0)
        few = [mig.send_case_message([TJ], case_id="FAIR", text=f"{i}").message_id for i in range(3)]
        time.sleep(1.0)
    lab.start_node("gateway")
    order: list[str] = []
    deadline = time.monotonic() + 60
    with Client.from_lab(lab.root, TJ) as tj:
        while set(order) < {*flood, *few} and time.monotonic() < deadline:
            for d in tj.subscribe(0, wait_s=1.0):
                order.append(d.message_id)
                tj.ack(d.message_id)  # acknowledged messages are not replayed by the next subscribe
    assert sorted(order) == sorted([*flood, *few]), "nothing dropped"
    last_of_few = max(order.index(m) for m in few)
    assert last_of_few < 60, f"the other office's messages waited behind the flood (position {last_of_few})"
