# churn.py HOST TLS_DIR STOPFILE PATH…: keeps asking HOST:8443 for the verdicts PATH… (POST,
# body "000000": a wrong code) one after another on one keep-alive TLS connection with the
# certificate in TLS_DIR, reconnecting after an error, until STOPFILE exists. Prints how
# many answers of each status it got. 67-fleet-stall keeps verdicts in flight with it.
import os, socket, ssl, sys, time
host, tls, stop, paths = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
ctx = ssl.create_default_context(cafile=tls + "/ca.pem")
ctx.check_hostname = False
ctx.load_cert_chain(tls + "/cert.pem", tls + "/key.pem")
counts, s, f, i = {}, None, None, 0
while not os.path.exists(stop):
    try:
        if s is None:
            s = ctx.wrap_socket(socket.create_connection((host, 8443), timeout=10))
            f = s.makefile("rb")
        path = paths[i % len(paths)]
        i += 1
        s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n000000\n")
        status, length, close = f.readline().split(b" ", 2)[1].decode(), 0, False
        while True:
            h = f.readline().strip()
            if not h:
                break
            if h.lower().startswith(b"content-length:"):
                length = int(h.split(b":")[1])
            close = close or h.lower() == b"connection: close"
        f.read(length)
        counts[status] = counts.get(status, 0) + 1
        if close:
            raise EOFError()
    except (OSError, EOFError, ssl.SSLError, IndexError, ValueError):
        counts["error"] = counts.get("error", 0) + 1
        if s is not None:
            s.close()
        s = None
        time.sleep(0.05)
print(" ".join("%s=%d" % kv for kv in sorted(counts.items())))
