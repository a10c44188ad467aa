# keepalive.py HOST TLS_DIR PATH SECONDS: one keep-alive TLS connection to HOST:8443 with the
# certificate in TLS_DIR, POSTing to PATH every half second. Prints "start=EPOCH", then
# "STATUS@SECONDS[:close]" for each answer and "closed@SECONDS" when the server closes it.
# The fleet suites use it to see a revocation or a lifetime reach an open connection.
import socket, ssl, sys, time
host, tls, path, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ctx = ssl.create_default_context(cafile=tls + "/ca.pem")
ctx.check_hostname = False
ctx.load_cert_chain(tls + "/cert.pem", tls + "/key.pem")
s = ctx.wrap_socket(socket.create_connection((host, 8443), timeout=5))
f = s.makefile("rb")
start, out = time.time(), []
print("start=%.3f" % start)
while time.time() - start < seconds:
    try:
        s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        line = f.readline()
        if not line:
            raise EOFError()
        status, close, length = line.split(b" ", 2)[1].decode(), "", 0
        while True:
            h = f.readline().strip()
            if not h:
                break
            if h.lower().startswith(b"content-length:"):
                length = int(h.split(b":")[1])
            if h.lower() == b"connection: close":
                close = ":close"
        f.read(length)
        out.append("%s@%.1f%s" % (status, time.time() - start, close))
        sys.stdout.write(out[-1] + "\n"); sys.stdout.flush()
    except (OSError, EOFError, ssl.SSLError):
        print("closed@%.1f" % (time.time() - start))
        break
    time.sleep(0.5)
