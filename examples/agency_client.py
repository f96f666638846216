"""An agency system in twenty lines: send an alert, read the other office's inbox, follow receipts.

Run against a lab started with `liaison lab up --dir lab`:

    .venv/bin/python examples/agency_client.py lab
"""

from __future__ import annotations

import sys
import time

from exchange.client import Client
from exchange.core.model import AlertCategory, Priority, ReceiptState

lab = sys.argv[1] if len(sys.argv) > 1 else "lab"

with Client.from_lab(lab, "ru-mvd-dushanbe") as dushanbe, Client.from_lab(lab, "tj-mvd-moscow") as moscow:
    sent = dushanbe.send_alert(
        ["tj-mvd-moscow"],
        category=AlertCategory.DRUG_TRAFFICKING,
        priority=Priority.FLASH,
        subject="Consignment on train 019",
        text="Courier with 4 kg boarded in Dushanbe; arrives Kazansky station.",
    )
    print("sent", sent.message_id)

    for delivery in moscow.subscribe(wait_s=10):  # resumable: pass the last cursor to continue
        if delivery.message_id == sent.message_id:
            print("Moscow received:", delivery.body.subject)  # type: ignore[union-attr]
            moscow.ack(delivery.message_id)  # READ receipt goes back, signed, via the gateway
            break

    for _ in range(100):
        status = dushanbe.status(sent.message_id)
        if status.recipients[0].state is ReceiptState.READ:
            break
        time.sleep(0.1)
    print("receipt chain:", [s.statement.state.name for s in status.statements])  # type: ignore[union-attr]
