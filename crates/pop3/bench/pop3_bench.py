"""POP3 benchmark client: RETR throughput over all messages of a maildrop, and logins/s.

Usage: pop3_bench.py <host> <port> <user> <password> [login-rounds] [threads]
Logins run on one thread by default: sealmail locks the maildrop (RFC 1939 section 8), so
concurrent sessions of one account get -ERR [IN-USE].
Talks raw sockets (no poplib line parsing), so the client is not the bottleneck: each RETR
is sent, then bytes are read until the CRLF.CRLF terminator, as a real client would do.
"""

import socket
import sys
import threading
import time

HOST, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ROUNDS = int(sys.argv[5]) if len(sys.argv) > 5 else 200
THREADS = int(sys.argv[6]) if len(sys.argv) > 6 else 1


class Client:
    def __init__(self):
        self.sock = socket.create_connection((HOST, PORT))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        assert self.line().startswith(b"+OK")

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def command(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def multiline(self):
        """Bytes of a multi-line body, terminator excluded."""
        parts = []
        data = self.buf
        if data.startswith(b".\r\n"):
            self.buf = data[3:]
            return b""
        while True:
            end = data.find(b"\r\n.\r\n")
            if end >= 0:
                parts.append(data[: end + 2])
                self.buf = data[end + 5:]
                return b"".join(parts)
            # Keep a tail that may hold a split terminator.
            parts.append(data[:-4])
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            data = data[-4:] + chunk

    def login(self):
        assert self.command("USER " + USER).startswith(b"+OK")
        reply = self.command("PASS " + PASSWORD)
        assert reply.startswith(b"+OK"), reply

    def quit(self):
        self.command("QUIT")
        self.sock.close()


def retr_all():
    client = Client()
    client.login()
    count = int(client.command("STAT").split()[1])
    start = time.perf_counter()
    total = 0
    for n in range(1, count + 1):
        assert client.command("RETR %d" % n).startswith(b"+OK")
        total += len(client.multiline())
    elapsed = time.perf_counter() - start
    client.quit()
    return count, total, elapsed


def logins():
    def worker(n):
        for _ in range(n):
            client = Client()
            client.login()
            client.quit()

    per = ROUNDS // THREADS
    threads = [threading.Thread(target=worker, args=(per,)) for _ in range(THREADS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per * THREADS / (time.perf_counter() - start)


retr_all()  # warm-up (caches, first-login drain)
best = None
for _ in range(3):
    count, total, elapsed = retr_all()
    mbps = total / elapsed / 1e6
    best = mbps if best is None else max(best, mbps)
print("retr: %d messages, %.1f MB, best of 3: %.1f MB/s" % (count, total / 1e6, best))
print("logins: %.0f/s (%d logins, %d threads)" % (logins(), ROUNDS, THREADS))
