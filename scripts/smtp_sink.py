"""An SMTP server on 127.0.0.1 that keeps every message it receives, for tests.

    python smtp_sink.py MAIL_DIR PORT_FILE [PORT]

Listens on PORT (default: a free one, written to PORT_FILE once listening) and
saves each message as MAIL_DIR/<n>.eml (as received) and MAIL_DIR/<n>.json:
mail_from, rcpt_tos, from, to, subject, date, message_id, body (the text part,
decoded), auth_user (the login, or null) and peer. Both are complete when they
appear (written aside, then renamed), before the server answers 250.

AUTH PLAIN and LOGIN are offered without TLS; any user name is accepted with the
password "cloudraid-sink" (so tests can check a refused login too).
Run by scripts/smtp-sink.sh; needs aiosmtpd.
"""

import asyncio
import email
import email.policy
import itertools
import json
import os
import signal
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

PASSWORD = b"cloudraid-sink"


class Keep:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",))
        auth = session.auth_data
        if isinstance(auth, LoginPassword):
            auth = auth.login
        if isinstance(auth, bytes):
            auth = auth.decode(errors="replace")
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "from": str(msg["From"] or ""),
            "to": str(msg["To"] or ""),
            "subject": str(msg["Subject"] or ""),
            "date": str(msg["Date"] or ""),
            "message_id": str(msg["Message-ID"] or ""),
            "body": part.get_content() if part is not None else "",
            "auth_user": auth if session.authenticated else None,
            "peer": str(session.peer),
        }
        name = f"{os.getpid()}-{next(self.counter)}"
        for ext, data in ((".eml", raw), (".json", json.dumps(record, indent=1).encode())):
            tmp = os.path.join(self.directory, f".{name}{ext}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, os.path.join(self.directory, name + ext))
        return "250 OK kept"


def authenticate(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword) and auth_data.password == PASSWORD:
        return AuthResult(success=True, auth_data=auth_data)
    return AuthResult(success=False, handled=False)


async def main(directory, port_file, port):
    os.makedirs(directory, exist_ok=True)
    loop = asyncio.get_running_loop()
    handler = Keep(directory)
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="cloudraid-smtp-sink",
            authenticator=authenticate,
            auth_require_tls=False,
        ),
        host="127.0.0.1",
        port=port,
    )
    actual = server.sockets[0].getsockname()[1]
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{actual}\n")
    os.rename(tmp, port_file)
    print(f"smtp sink: 127.0.0.1:{actual}, messages in {directory}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else 0))
