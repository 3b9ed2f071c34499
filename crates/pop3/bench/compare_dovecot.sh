#!/bin/sh
# RETR throughput and logins/s of sealmail's POP3 next to Dovecot's, same messages, same client,
# same run. Needs: a release build (cargo build --release -p sealmail), python3, and Debian's
# dovecot-pop3d (apt-get install -y dovecot-pop3d). Plain POP3 on loopback for both servers.
# Usage: crates/pop3/bench/compare_dovecot.sh [work-dir]
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
B=${1:-/tmp/pop3-bench}
SEALMAIL="$ROOT/target/release/sealmail"
PASSWORD=bench-password
rm -rf "$B" && mkdir -p "$B/maildir/cur" "$B/maildir/new" "$B/maildir/tmp" "$B/run" "$B/state"

# 1,000 messages of 2-40 KB (about 21 MB), some lines starting with a dot.
python3 - "$B/maildir/cur" <<'PY'
import os, random, sys
random.seed(7)
words = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
for i in range(1000):
    size, lines, n = random.randint(2000, 40000), [], 0
    while n < size:
        line = b" ".join(random.choice(words) for _ in range(random.randint(5, 14)))
        if random.random() < 0.02:
            line = b"." + line
        lines.append(line)
        n += len(line) + 2
    head = b"From: sender%d@example.org\r\nTo: bench@example.org\r\nSubject: bench message %d\r\n" \
        b"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\nMessage-ID: <%d@bench>\r\n\r\n" % (i, i, i)
    with open(os.path.join(sys.argv[1], "%010d.%d.bench:2," % (1700000000 + i, i)), "wb") as f:
        f.write(head + b"\r\n".join(lines) + b"\r\n")
PY

# Dovecot: Maildir, passwd-file with a plain password (cheapest possible login), port 21110.
mkdir -p "$B/dovemail/bench" && cp -r "$B/maildir" "$B/dovemail/bench/Maildir"
chown -R dovecot:dovecot "$B/dovemail"
echo "bench:{PLAIN}$PASSWORD" > "$B/passwd"
cat > "$B/dovecot.conf" <<CONF
protocols = pop3
listen = 127.0.0.1
base_dir = $B/run
state_dir = $B/state
log_path = $B/dovecot.log
ssl = no
disable_plaintext_auth = no
mail_location = maildir:$B/dovemail/%u/Maildir
first_valid_uid = 0
passdb {
  driver = passwd-file
  args = $B/passwd
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=$B/dovemail/%u
}
service pop3-login {
  inet_listener pop3 {
    port = 21110
  }
  inet_listener pop3s {
    port = 0
  }
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = 0
  }
}
CONF
chmod 755 "$B" "$B/dovemail"
dovecot -c "$B/dovecot.conf"

# sealmail: the same Maildir imported into an encrypted mailbox, POP3 on port 21111.
printf '%s\n' "$PASSWORD" | "$SEALMAIL" --data-dir "$B/seal" account add bench@example.org --password-stdin >/dev/null
printf '%s\n' "$PASSWORD" | "$SEALMAIL" --data-dir "$B/seal" import bench@example.org "$B/maildir" --password-stdin >/dev/null
SEALMAIL_IMAP_LISTEN=off SEALMAIL_IMAPS_LISTEN=off SEALMAIL_POP3S_LISTEN=off SEALMAIL_METRICS_LISTEN=off \
SEALMAIL_POP3_LISTEN=127.0.0.1:21111 RUST_LOG=warn "$SEALMAIL" --data-dir "$B/seal" serve 2>"$B/sealmail.log" &
SEAL_PID=$!
sleep 2

echo "== dovecot $(dovecot --version | cut -d' ' -f1)"
python3 "$HERE/pop3_bench.py" 127.0.0.1 21110 bench "$PASSWORD"
echo "== sealmail"
python3 "$HERE/pop3_bench.py" 127.0.0.1 21111 bench@example.org "$PASSWORD"

kill "$SEAL_PID"
kill "$(cat "$B/run/master.pid")"
wait "$SEAL_PID" || true
