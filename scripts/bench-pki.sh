# Sourced by the bench scripts (not run on its own): `bench_pki` writes, into the current folder, a throwaway
# PKI for loopback benchmarks: ca.pem/ca.key, server.pem/server.key (localhost, 127.0.0.1), client.pem/client.key,
# and layer.pem (RSA 2048, the PHR-06 signing key). Keys are P-256 and valid for 2 days; nothing is kept.

issue_bench_leaf() { # name cn ext
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
  printf '%s\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" -days 2 -extfile "$1.ext" 2>/dev/null
}

bench_pki() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
    -subj "/CN=bench CA" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=keyCertSign" 2>/dev/null
  issue_bench_leaf server localhost "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
  issue_bench_leaf client bench-client "extendedKeyUsage=clientAuth"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out layer.pem 2>/dev/null
}
