#!/usr/bin/env python3
"""The load-test policy (loadtest/perf.sh and the other scripts): N keys in 20 groups over
2 orgs, every limit type on all three layers. Usage: gen_policy.py KEYS [LISTEN] [DATA_DIR] > file.toml
With GUARDS=on in the environment, the pii, secrets and injection guardrails are attached to
both orgs (so to every request); with GUARDS=response, to org0 only, on requests and answers.
LIMITS=all (default) also gives every layer a monthly token_budget and model_limits: a
"gpt-4o*" pattern (rpm, tpm, budget_usd; the harness's gpt-4o-mini falls in it, so each
request passes three pattern pools more) and an "o1*" one it does not match; LIMITS=basic
leaves both out (the policy before them, for A/B runs).
With EXPORT=on, two log sinks are attached to both orgs (so get every line): "archive", an
s3 sink to the S3-compatible store at EXPORT_S3 (an endpoint URL, bucket tollgate-logs,
keys in TG_S3_ID/TG_S3_SECRET), and "siem", an http sink to EXPORT_HTTP (default
http://127.0.0.1:18181/ingest). EXPORT=s3 attaches the s3 sink only."""
import hashlib, os, sys

keys = int(sys.argv[1])
listen = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:18190"
data = sys.argv[3] if len(sys.argv) > 3 else "/tmp/tollgate-genpolicy"
lim = 'rpm = {r}\nrph = {r}0\nrpd = {r}00\ntpm = {t}\ntpd = {t}00\nmax_parallel = {p}\nbudget_usd = {b}\nbudget_period = "monthly"\n'
if os.environ.get("LIMITS", "all") != "basic":
    lim += ('token_budget = {t}000\ntoken_budget_period = "monthly"\n'
            'model_limits = {{ "gpt-4o*" = {{ rpm = {r}, tpm = {t}, budget_usd = {b} }}, "o1*" = {{ rpm = {r}, max_parallel = {p} }} }}\n')
out = sys.stdout
out.write(f'''[server]
listen = ["{listen}"]
data_dir = "{data}"
request_log = "off"
threads = 1

[[providers]]
id = "mock"
api = "openai"
base_url = "http://127.0.0.1:18181"

[[models]]
name = "gpt-4o-mini"
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.6
targets = [{{ provider = "mock", model = "gpt-4o-mini", weight = 1 }}, {{ provider = "mock", model = "gpt-4o-mini", weight = 1 }}]
''')
guards = os.environ.get("GUARDS", "off")
on = '\non = ["request", "response"]' if guards == "response" else ""
if guards != "off":
    out.write('''
[[guardrails]]
id = "pii"
kind = "pii"
entities = ["email", "phone", "credit_card", "iban", "ip_address", "us_ssn"]
action = "redact"{on}

[[guardrails]]
id = "secrets"
kind = "secrets"
action = "block"{on}

[[guardrails]]
id = "injection"
kind = "injection"
threshold = 0.8
action = "block"{on}
'''.format(on=on))
export = os.environ.get("EXPORT", "off")
sinks = []
if export in ("on", "s3"):
    sinks.append("archive")
    out.write(f'''
[[log_sinks]]
id = "archive"
kind = "s3"
url = "s3://tollgate-logs/load/"
endpoint = "{os.environ.get("EXPORT_S3", "http://127.0.0.1:5000")}"
region = "us-east-1"
access_key_env = "TG_S3_ID"
secret_key_env = "TG_S3_SECRET"
''')
if export == "on":
    sinks.append("siem")
    out.write(f'''
[[log_sinks]]
id = "siem"
kind = "http"
url = "{os.environ.get("EXPORT_HTTP", "http://127.0.0.1:18181/ingest")}"
''')
for o in range(2):
    attach = 'guardrails = ["pii", "secrets", "injection"]\n' if guards == "on" or (guards == "response" and o == 0) else ""
    if sinks:
        attach += "log_sinks = [" + ", ".join(f'"{x}"' for x in sinks) + "]\n"
    out.write(f'\n[[orgs]]\nid = "org{o}"\n' + attach + lim.format(r=10_000_000, t=10_000_000_000, p=100000, b=10_000_000))
for g in range(20):
    out.write(f'\n[[groups]]\nid = "grp{g}"\norg = "org{g%2}"\nrouting = "latency"\nmodels = ["gpt-*"]\n' + lim.format(r=5_000_000, t=5_000_000_000, p=50000, b=5_000_000))
kl = lim.format(r=1_000_000, t=1_000_000_000, p=10000, b=1_000_000)
for k in range(keys):
    # key k's secret is "tg-load-{k}" (so a client can present it)
    h = hashlib.sha256(f"tg-load-{k}".encode()).hexdigest()
    out.write(f'\n[[keys]]\nid = "key{k}"\nname = "key{k}"\ngroup = "grp{k%20}"\nsha256 = "{h}"\n' + kl)
