"""COMPRESS=DEFLATE (RFC 4978) from an independent implementation: Python's zlib with raw
DEFLATE (wbits=-15) over a socket, plain or TLS. imaplib has no COMPRESS, so this is a small
line-level client. Real commands must work after compression starts, and the wire must really
carry compressed data."""

import os
import socket
import ssl
import sys
import zlib

PORT = int(os.environ["IMAP_PORT"])
USE_TLS = os.environ.get("IMAP_TLS") == "1"
ADDRESS = "alice@example.org"
PASSWORD = "correct horse"


class Client:
    def __init__(self):
        sock = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        if USE_TLS:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buffer = b""
        self.compressor = None
        self.decompressor = None
        self.wire_in = 0
        self.plain_in = 0

    def start_compression(self):
        assert self.buffer == b"", "nothing may follow COMPRESS's OK uncompressed"
        self.compressor = zlib.compressobj(wbits=-15)
        self.decompressor = zlib.decompressobj(wbits=-15)

    def send(self, data: bytes):
        if self.compressor is not None:
            data = self.compressor.compress(data) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def fill(self):
        raw = self.sock.recv(65536)
        if not raw:
            raise EOFError("server closed the connection; buffered: %r" % self.buffer)
        self.wire_in += len(raw)
        if self.decompressor is not None:
            raw = self.decompressor.decompress(raw)
        self.plain_in += len(raw)
        self.buffer += raw

    def read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def line(self) -> bytes:
        """One response line with any literals inlined."""
        out = b""
        while True:
            while b"\r\n" not in self.buffer:
                self.fill()
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            out += line
            if line.endswith(b"}") and b"{" in line:
                size = int(line[line.rindex(b"{") + 1 : -1])
                out += self.read_exact(size)
                continue
            return out

    def command(self, tag: str, text: bytes) -> list:
        self.send(tag.encode() + b" " + text + b"\r\n")
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag.encode() + b" "):
                return lines


def check(condition, what):
    if not condition:
        print("FAILED:", what)
        sys.exit(1)


def main():
    c = Client()
    greeting = c.line()
    check(greeting.startswith(b"* OK"), greeting)
    reply = c.command("a1", b'LOGIN %s "%s"' % (ADDRESS.encode(), PASSWORD.encode()))
    check(reply[-1].startswith(b"a1 OK"), reply)
    caps = c.command("a2", b"CAPABILITY")
    check(b" COMPRESS=DEFLATE" in caps[0], caps)

    reply = c.command("c1", b"COMPRESS DEFLATE")
    check(reply == [b"c1 OK DEFLATE active"], reply)
    c.start_compression()

    # Real work inside the compressed stream.
    body = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 2000).encode()
    msg = (
        b"From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: squeezed\r\n"
        b"Message-ID: <squeezed@x>\r\n\r\n" + body + b"\r\n"
    )
    c.send(b"c2 APPEND INBOX (\\Seen) {%d+}\r\n" % len(msg) + msg + b"\r\n")
    reply = []
    while True:
        line = c.line()
        reply.append(line)
        if line.startswith(b"c2 "):
            break
    check(reply[-1].startswith(b"c2 OK [APPENDUID "), reply)

    reply = c.command("c3", b"SELECT INBOX")
    check(b"* 1 EXISTS" in reply, reply)
    check(reply[-1].startswith(b"c3 OK"), reply)

    before_wire, before_plain = c.wire_in, c.plain_in
    reply = c.command("c4", b"UID FETCH 1 (RFC822.SIZE BODY.PEEK[])")
    check(reply[-1].startswith(b"c4 OK"), reply)
    check(msg in reply[0], "FETCH BODY[] returned the message intact")
    check(b"RFC822.SIZE %d" % len(msg) in reply[0], reply[0][:120])
    wire, plain = c.wire_in - before_wire, c.plain_in - before_plain
    check(wire * 10 < plain, "response was compressed (%d wire bytes for %d)" % (wire, plain))

    reply = c.command("c5", b"SEARCH SUBJECT squeezed")
    check(reply[0] in (b"* SEARCH 1", b"* ESEARCH (TAG \"c5\") ALL 1"), reply)

    # A second COMPRESS is refused inside the compressed stream, which keeps working.
    reply = c.command("c6", b"COMPRESS DEFLATE")
    check(reply[0].startswith(b"c6 NO [COMPRESSIONACTIVE]"), reply)
    reply = c.command("c7", b"NOOP")
    check(reply == [b"c7 OK NOOP completed"], reply)

    # Two commands in one compressed burst (pipelining) are both answered.
    c.send(b"p1 NOOP\r\np2 STATUS INBOX (MESSAGES)\r\n")
    lines = []
    while not (lines and lines[-1].startswith(b"p2 ")):
        lines.append(c.line())
    check(lines[0] == b"p1 OK NOOP completed", lines)
    check(lines[1] == b"* STATUS INBOX (MESSAGES 1)", lines)

    reply = c.command("c8", b"LOGOUT")
    check(reply[0].startswith(b"* BYE"), reply)
    check(reply[-1].startswith(b"c8 OK"), reply)
    print("compress session passed (tls=%s)" % USE_TLS)


if __name__ == "__main__":
    main()
