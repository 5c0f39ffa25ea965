//! Key files made once with OpenSSL 3.0, to prove interoperability with what operators
//! actually have. Test-only keys: they protect nothing.

/// RSA key, PKCS#1 (`openssl genrsa -traditional 2048`).
pub(super) const RSA_PKCS1: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEowIBAAKCAQEAketId1FLmFRB0WEtplIhuvWjMnwWhFgiRmC1h9hur/B5beFu\n\
+E3jShsaxXwIbxvXNh9i5MsU+KN+9AUI1NbeVt2En4hq/1rWZetWsTEGZb0lLzZx\n\
VNeV4MPDQeO9mhS4+BFvQoGRlz45/2ZgWiTJ+brGynQ6UKobcVXNHHpDkGGlrJ4a\n\
lAArT+p0s0NfbzvNgi0g6cWznNIJhN/cYqHCXtsCggORD9VN7xi6CIqvAVrGDIbf\n\
JzFKtvmkJbYa7rShyPQrI5aQvFulhJ3XGkyr3xy3w775HEA+DnJgG/2iOHwhxzNH\n\
l7oxqgcYE4OxcLcdeiUdpGwjXKrf5UYKcjtm6wIDAQABAoIBAAk38GO8BWbsk8fo\n\
OBu/fpVderTwH/VhIrEy34+4fa2sfI9o5DuC+C6wra1M8QohRnm12+fmaJRuB9GK\n\
Fo0TvLIyMR8UXZDKVVcqWgIRvdIO9AVv5BMJwlST1DHFHdpZICJpP4/XuFycuB9J\n\
gXbQci4jvaFWscRyKrpV7a0J5bDTp1N8Gpw6yPgHEOR878qmFZuCUf9s3tVBUCfh\n\
eSU+f7ExHn5YRbB5hSVqLiD8NZ9ehkNdlr9IRJiq4NXRU0uwxZWbO4XY1P1+6MPA\n\
TR0LB65AHuoZDb8SmsQoReP62BK8qXIkMKHqEumcnrD4LacyeAWaBcofF/2nuHcM\n\
Rb8V5EECgYEAyh8Bz2ht3vq8ZgMKI9gN3uRi2DY9FlD115behfaxg4tWo0gCPykE\n\
NBzjFDW0G+83h0sSB6ER6kZbpf9Os0vh7ls6TzQx4LIUTS+sfVOXVY4uiah35dRy\n\
3wX8iFWDdTAQbmptxHntyty1NY+xVIrBeyKzNq+HK7tQtO7N6I3doWECgYEAuND6\n\
vpu1QvIvyyfQmQrfWZaPeOIZsdZFA5X7LGowHtu2BVuX/9jkVUPgJLXxOinkaBYH\n\
ienlWIJKwhG+FaW+21kQs+e0UK1FVGqPEZkxKPoSCCECXs8rV+VhFdu+KnY/n+Xa\n\
LXlt336Y08NEpkSn9g5bs4u09YXgQC9eq7tfz8sCgYBZGVYY8jYM54cJiSl9J47l\n\
xNP17+L55XKaOP2bHGagUFo+3E1xPkmGF33auNnOvqNB1sv55P0awy0/fc5Zp4fP\n\
JRQNOjsKjDX62Js3HBRIOMc3E7bW79I7kk4CY3/xtuBnbC87P2yd0rFnDRLk683i\n\
1CcgYjw6APbQ67yFWZRrwQKBgQCL1BDiBYyuie3/FrCMGd3COldybh5inmq4u9C9\n\
WdnufuzIQPRPbhnTKPd8zusjxm45EfHCNmR/ApTtH99hIXW1Hz2z36pdH7tEkxqL\n\
hgvbpNffrpnMgZGZfsJld0v5dF3O7GiV3zlxzqZyEVrvMSKi11oqDZlr6U4xQaWu\n\
6KUk4QKBgC93tGkKS3Rmc990FScfU8Ivr3yrl68K1Jkigw/M9ZpLsaYZGyjlxMb0\n\
Hk94oR2EmD3vGwMpPK/jdj0ZuL6NfIrWe+AtvNQHSo4UD3NRtIuyJnO6JESr063p\n\
qtEafpNu15IkMZtZF8Wx4f6uYAZCCHBgmXsFDPxfQpePpNsS0oJc\n\
-----END RSA PRIVATE KEY-----\n";

/// The same RSA key as PKCS#8, which rcgen needs to sign a certificate for it.
pub(super) const RSA_PKCS8: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCR60h3UUuYVEHR\n\
YS2mUiG69aMyfBaEWCJGYLWH2G6v8Hlt4W74TeNKGxrFfAhvG9c2H2LkyxT4o370\n\
BQjU1t5W3YSfiGr/WtZl61axMQZlvSUvNnFU15Xgw8NB472aFLj4EW9CgZGXPjn/\n\
ZmBaJMn5usbKdDpQqhtxVc0cekOQYaWsnhqUACtP6nSzQ19vO82CLSDpxbOc0gmE\n\
39xiocJe2wKCA5EP1U3vGLoIiq8BWsYMht8nMUq2+aQlthrutKHI9CsjlpC8W6WE\n\
ndcaTKvfHLfDvvkcQD4OcmAb/aI4fCHHM0eXujGqBxgTg7Fwtx16JR2kbCNcqt/l\n\
RgpyO2brAgMBAAECggEACTfwY7wFZuyTx+g4G79+lV16tPAf9WEisTLfj7h9rax8\n\
j2jkO4L4LrCtrUzxCiFGebXb5+ZolG4H0YoWjRO8sjIxHxRdkMpVVypaAhG90g70\n\
BW/kEwnCVJPUMcUd2lkgImk/j9e4XJy4H0mBdtByLiO9oVaxxHIqulXtrQnlsNOn\n\
U3wanDrI+AcQ5HzvyqYVm4JR/2ze1UFQJ+F5JT5/sTEeflhFsHmFJWouIPw1n16G\n\
Q12Wv0hEmKrg1dFTS7DFlZs7hdjU/X7ow8BNHQsHrkAe6hkNvxKaxChF4/rYEryp\n\
ciQwoeoS6ZyesPgtpzJ4BZoFyh8X/ae4dwxFvxXkQQKBgQDKHwHPaG3e+rxmAwoj\n\
2A3e5GLYNj0WUPXXlt6F9rGDi1ajSAI/KQQ0HOMUNbQb7zeHSxIHoRHqRlul/06z\n\
S+HuWzpPNDHgshRNL6x9U5dVji6JqHfl1HLfBfyIVYN1MBBuam3Eee3K3LU1j7FU\n\
isF7IrM2r4cru1C07s3ojd2hYQKBgQC40Pq+m7VC8i/LJ9CZCt9Zlo944hmx1kUD\n\
lfssajAe27YFW5f/2ORVQ+AktfE6KeRoFgeJ6eVYgkrCEb4Vpb7bWRCz57RQrUVU\n\
ao8RmTEo+hIIIQJezytX5WEV274qdj+f5doteW3ffpjTw0SmRKf2Dluzi7T1heBA\n\
L16ru1/PywKBgFkZVhjyNgznhwmJKX0njuXE0/Xv4vnlcpo4/ZscZqBQWj7cTXE+\n\
SYYXfdq42c6+o0HWy/nk/RrDLT99zlmnh88lFA06OwqMNfrYmzccFEg4xzcTttbv\n\
0juSTgJjf/G24GdsLzs/bJ3SsWcNEuTrzeLUJyBiPDoA9tDrvIVZlGvBAoGBAIvU\n\
EOIFjK6J7f8WsIwZ3cI6V3JuHmKeari70L1Z2e5+7MhA9E9uGdMo93zO6yPGbjkR\n\
8cI2ZH8ClO0f32EhdbUfPbPfql0fu0STGouGC9uk19+umcyBkZl+wmV3S/l0Xc7s\n\
aJXfOXHOpnIRWu8xIqLXWioNmWvpTjFBpa7opSThAoGAL3e0aQpLdGZz33QVJx9T\n\
wi+vfKuXrwrUmSKDD8z1mkuxphkbKOXExvQeT3ihHYSYPe8bAyk8r+N2PRm4vo18\n\
itZ74C281AdKjhQPc1G0i7Imc7okRKvTremq0Rp+k27XkiQxm1kXxbHh/q5gBkII\n\
cGCZewUM/F9Cl4+k2xLSglw=\n\
-----END PRIVATE KEY-----\n";

/// P-256 key, SEC1 with an `EC PARAMETERS` block first (`openssl ecparam -genkey`).
pub(super) const EC_SEC1: &str = "\
-----BEGIN EC PARAMETERS-----\n\
BggqhkjOPQMBBw==\n\
-----END EC PARAMETERS-----\n\
-----BEGIN EC PRIVATE KEY-----\n\
MHcCAQEEIBpqFF9o/ntsSZSpk1X9qHHt2sesXflOrMAkpEnM0WGVoAoGCCqGSM49\n\
AwEHoUQDQgAEhH+mtV5112p4EImeWqms4ged/Y6UJ4wQOhSvTSudPBUqhm95rvKH\n\
4XgZbJJ6DAbjgcpG8+LN5u0xHlt9bCeCSQ==\n\
-----END EC PRIVATE KEY-----\n";

/// The same P-256 key as PKCS#8.
pub(super) const EC_PKCS8: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgGmoUX2j+e2xJlKmT\n\
Vf2oce3ax6xd+U6swCSkSczRYZWhRANCAASEf6a1XnXXangQiZ5aqaziB539jpQn\n\
jBA6FK9NK508FSqGb3mu8ofheBlsknoMBuOBykbz4s3m7TEeW31sJ4JJ\n\
-----END PRIVATE KEY-----\n";

/// The same key, `openssl pkcs8 -topk8 -v2 aes-256-cbc`, passphrase `secret`.
pub(super) const EC_ENCRYPTED_PKCS8: &str = "\
-----BEGIN ENCRYPTED PRIVATE KEY-----\n\
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAi3EZbpRuC7OQICCAAw\n\
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEDIK9eVI+pf3oiJb9aJaTDcEgZCj\n\
BSE+j0cvfwqYETbNVMartGdap5SYu08EWAhDZO3PyAjhWnQi77WCu0v5IrINW6ua\n\
x8zphEYDHKfk5PrB1qbJ4EzFBtXHswCHlpqS/XsKhXn7jM4ZIyZpiJM4i3q0iCHf\n\
LN8zvgFSxYhfIqwbooPfGDX/X6vuHCbiixcOfdyqhy6NfGdURPB65FeV9wc/+TY=\n\
-----END ENCRYPTED PRIVATE KEY-----\n";

/// The same key, legacy OpenSSL encryption (`openssl ec -aes256`), passphrase `secret`.
pub(super) const EC_LEGACY_ENCRYPTED: &str = "\
-----BEGIN EC PRIVATE KEY-----\n\
Proc-Type: 4,ENCRYPTED\n\
DEK-Info: AES-256-CBC,4784DB36D853B4434361DE1ECAAE5CF4\n\
\n\
tNYn1Zy5VSFYc4d6XjEo97W5jXkwvF5hT2JT0t5QPXiu8qoXl/A7SrbXmc5RSubZ\n\
09I4z/0GtOau95QZW7dZoQcafqkfd31p4EBUBvftXOzM2CYAT5faZGaLClLRopnW\n\
M22YLev3zkwynSbppJMTp/mISuaqhcFPDGkImrdWBUI=\n\
-----END EC PRIVATE KEY-----\n";

/// The same key, `openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES` (old PKCS#12 PBE), passphrase `secret`.
pub(super) const EC_PKCS12_PBE: &str = "\
-----BEGIN ENCRYPTED PRIVATE KEY-----\n\
MIGxMBwGCiqGSIb3DQEMAQMwDgQIDrGyWGxnLTQCAggABIGQVjPRBfN7Vw3jHwS9\n\
S203kBsQTSAkNFaJ+hd0PccU1TcpsdjWCia50NK7+AUHQKvpYAgA72ByGvRZlX5a\n\
6Ti5nC6bcRP5xQcCjWQvux4ZUhao6JbaGeZQWlXr6J7lAl/bOKREiLWkydwHFeNF\n\
0YqqvKiVCg7JwlsG5uuSGzMmST0yDDYaZKkH16FGvZ6+QChH\n\
-----END ENCRYPTED PRIVATE KEY-----\n";
