#!/usr/bin/env python3
"""Writes the hand-made malformed inputs of tests/data/bad/ (standard library only).

Run from anywhere: `python3 tests/data/bad/make_bad.py`. Each file is one client's
whole connection; every one must be refused with a logged reason, nothing stored.
The descriptions live in README.md next to the files.
"""
import gzip, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))

def s(b):  # str with the shortest header
    b = b.encode() if isinstance(b, str) else b
    n = len(b)
    if n < 32: return bytes([0xa0 | n]) + b
    if n < 256: return bytes([0xd9, n]) + b
    if n < 65536: return b'\xda' + struct.pack('>H', n) + b
    return b'\xdb' + struct.pack('>I', n) + b

def bin32(b): return b'\xc6' + struct.pack('>I', len(b)) + b
def et(sec, ns): return b'\xd7\x00' + struct.pack('>II', sec, ns)
REC = b'\x81' + s('a') + b'\x01'             # {"a": 1}
TAG = s('bad.input')
T = b'\xce' + struct.pack('>I', 1700000000)  # uint32 time

def message(time, rec=REC, extra=b''):
    return (b'\x94' if extra else b'\x93') + TAG + time + rec + extra

files = {
    # Truncated and lying extension values.
    'ext8-truncated': b'\x93' + TAG + b'\xc7\xc8\x00\x01\x02\x03',
    'ext32-huge-length': message(b'\xc9\xff\xff\xff\xf0\x00' + b'\0' * 8),
    # Huge declared lengths and counts.
    'tag-str32-4gib': b'\x93\xdb\xff\xff\xff\xff' + b'abc',
    'record-bin32-2gib': message(T, b'\x81' + s('a') + b'\xc6\x7f\xff\xff\xff' + b'xx'),
    'forward-array32-4g-entries': b'\x92' + TAG + b'\xdd\xff\xff\xff\xff' + b'\x92' + T + REC,
    'record-array16-count-lies': message(T, b'\xdc\xff\xff' + b'\x01' * 10),
    # Bad EventTimes.
    'eventtime-nanos-1e9': message(et(1700000000, 1000000000)),
    'eventtime-ext0-12-bytes': message(b'\xc7\x0c\x00' + b'\0' * 12),
    'time-float-nan': message(b'\xcb' + struct.pack('>d', float('nan'))),
    'time-uint64-over-i64': message(b'\xcf\xff\xff\xff\xff\xff\xff\xff\xff'),
    'time-bool': message(b'\xc3'),
    'meta-time-not-map': b'\x92' + TAG + b'\x91\x92\x92' + T + b'\x01' + REC,
    # Depth bombs.
    'depth-bomb-arrays-100k': message(T, b'\x91' * 100000 + b'\x01'),
    'depth-bomb-maps-10k': message(T, (b'\x81' + s('k')) * 10000 + b'\x01'),
    'depth-bomb-in-options': message(T, REC, b'\x81' + s('x') + b'\x91' * 5000 + b'\xc0'),
    'json-depth-bomb': b'["bad.input", 1700000000, ' + b'[' * 100000 + b']' * 100000 + b']',
    # Gzip: a bomb past the default 64 MiB limit, a member with a bad CRC.
    'gzip-bomb-100mib': None,  # filled below
    'gzip-bad-crc': None,
    # Options.
    'options-map32-4g-pairs': message(T, REC, b'\xdf\xff\xff\xff\xff' + s('chunk') + s('c1')),
    'options-size-mismatch': message(T, REC, b'\x82' + s('chunk') + s('c1') + s('size') + b'\xcf' + b'\xff' * 8),
    'options-chunk-not-string': message(T, REC, b'\x81' + s('chunk') + b'\x2a'),
    'options-signal-300': b'\x93' + TAG + bin32(b'\x92' + T + REC) + b'\x81' + s('fluent_signal') + b'\xcd\x01\x2c',
    # Shapes.
    'tag-not-utf8': b'\x93' + s(b'\xff\xfe\xfd') + T + REC,
    'message-nil-record': message(T, b'\xc0'),
    'trailing-bytes-after-nil': b'\xc0\xc0\x01',
    'packed-entry-three-elements': b'\x92' + TAG + bin32(b'\x93' + T + REC + b'\x01'),
    'packed-trailing-partial-entry': b'\x92' + TAG + bin32(b'\x92' + T + REC + b'\x92' + T),
    'five-element-frame': b'\x95' + TAG + T + REC + b'\x80\x80',
    'json-unterminated': b'["bad.input", 1700000000, {"a": "no end',
    'json-not-an-array': b'{"tag": "bad.input"}',
}

bomb_body = gzip.compress(b'\x92' + T + REC + b'\0' * (100 << 20), compresslevel=9)
files['gzip-bomb-100mib'] = (b'\x93' + TAG + bin32(bomb_body)
                             + b'\x81' + s('compressed') + s('gzip'))
good = bytearray(gzip.compress(b'\x92' + T + REC))
good[-8] ^= 0xff  # CRC32 of the member
files['gzip-bad-crc'] = (b'\x93' + TAG + bin32(bytes(good))
                         + b'\x81' + s('compressed') + s('gzip'))

for name, data in files.items():
    with open(os.path.join(HERE, 'hand-' + name + '.bin'), 'wb') as f:
        f.write(data)
print(f'wrote {len(files)} files')
