"""A local SMTP server for tests/e2e/alert_channels.rs: aiosmtpd on 127.0.0.1:PORT, each
message received written as one JSON file {mail_from, rcpt_tos, data} into DIR.

Usage: smtp_sink.py PORT DIR. Prints "ready" once it accepts connections; runs until
killed."""

import json
import os
import sys
import time
import uuid

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out):
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        tmp = os.path.join(self.out, f".{uuid.uuid4().hex}")
        with open(tmp, "w") as f:
            json.dump(record, f)
        # Renamed into place: the test never reads a half-written file.
        os.rename(tmp, os.path.join(self.out, f"{uuid.uuid4().hex}.json"))
        return "250 Message accepted for delivery"


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(out), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
