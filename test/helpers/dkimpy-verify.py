#!/usr/bin/python3
"""Verifies a message's DKIM signatures and ARC chain with Debian's dkimpy (python3-dkim) and
authheaders (python3-authheaders): tools nobody in this project wrote.

usage: /usr/bin/python3 dkimpy-verify.py '{"sel._domainkey.example.org": "v=DKIM1; k=rsa; p=..."}' < message

The JSON names the TXT records the DNS function serves (nothing else resolves). Prints JSON:
{"dkim_verify": bool (dkim.verify: the topmost signature),
 "dkim": [{"d", "s", "h", "valid"}...] (every DKIM-Signature, top first),
 "arc": {"cv", "reason", "sets": [{"instance", "cv", "ams_valid", "as_valid"}...]} (dkim.arc_verify),
 "authentication_results": str (authheaders, dkim and arc)}
"""
import json
import re
import sys

import authheaders
import dkim

records = {k.lower().rstrip('.'): v for k, v in json.loads(sys.argv[1]).items()}


def dnsfunc(name, timeout=5):
    key = (name.decode() if isinstance(name, bytes) else name).lower().rstrip('.')
    value = records.get(key)
    return value.encode() if value is not None else None


def s(v):
    return v.decode() if isinstance(v, bytes) else v


msg = sys.stdin.buffer.read()
out = {'dkim_verify': bool(dkim.verify(msg, dnsfunc=dnsfunc)), 'dkim': []}

d = dkim.DKIM(msg)
signatures = [v for (k, v) in d.headers if k.lower() == b'dkim-signature']
for idx, value in enumerate(signatures):
    tags = dict((t.split(b'=', 1)[0].strip(), t.split(b'=', 1)[1].strip()) for t in value.split(b';') if b'=' in t)
    try:
        valid = bool(dkim.DKIM(msg).verify(idx=idx, dnsfunc=dnsfunc))
    except dkim.DKIMException as e:
        valid = False
    out['dkim'].append({
        'd': s(tags.get(b'd')),
        's': s(tags.get(b's')),
        'h': re.sub(r'\s+', '', s(tags.get(b'h', b''))),
        'valid': valid,
    })

cv, results, reason = dkim.arc_verify(msg, dnsfunc=dnsfunc)
out['arc'] = {
    'cv': s(cv),
    'reason': s(reason),
    'sets': [{'instance': r['instance'], 'cv': s(r.get('cv')), 'ams_valid': bool(r.get('ams-valid')), 'as_valid': bool(r.get('as-valid'))} for r in results],
}
try:
    out['authentication_results'] = s(authheaders.authenticate_message(msg, 'verifier.example', dkim=True, arc=True, dmarc=False, dnsfunc=dnsfunc))
except Exception as e:  # authheaders 0.15 fails on a chain that has ended (cv None)
    out['authentication_results'] = 'error: %r' % e
print(json.dumps(out))
