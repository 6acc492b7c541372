#!/usr/bin/env python3
"""The driver of scripts/bench-freeswitch.sh: places blocks of SIP calls with sipp against one
running FreeSWITCH and reads what they cost it. Run it through bench-freeswitch.sh, which sets
FreeSWITCH, the module and the Salesforce stand-in up.

  cpu           rounds of alternating blocks; FreeSWITCH CPU per call from /proc/<pid>/stat,
                median of per-round ratios to no lookup with their range, the A-versus-A control,
                thread and RSS peaks, setup time p50/p99 (sipp's response-time trace)
  instructions  FreeSWITCH under callgrind: instructions per call of each variant
"""

import argparse
import glob
import os
import re
import statistics
import subprocess
import sys
import time

# name, destination, how callers are numbered, what it is
VARIANTS = [
    ("none", "3000", "fixed", "no lookup"),
    ("none-again", "3005", "fixed", "no lookup again (A-versus-A control)"),
    ("hit", "3001", "fixed", "sf_lookup, every call a cache hit"),
    ("miss", "3002", "fresh", "sf_lookup, every call a miss (a new number each)"),
    ("curl-app", "3003", "fresh", "the curl application (mod_curl), a new number each"),
    ("lua-curl", "3004", "fresh", "a Lua script calling the curl API, a new number each"),
]
HIT_NUMBER = "+14155550123"
CONTROL_LIMIT = 0.02
TICK = os.sysconf("SC_CLK_TCK")

_fresh = 0


def fresh_number():
    """A number nobody in the org has (area code 212), never used before in this run."""
    global _fresh
    n = _fresh
    _fresh += 1
    return "+1212%03d%04d" % (200 + (n // 10000) % 700, n % 10000)


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime, stime: fields 14 and 15 of stat, i.e. 11 and 12 after the command name.
    return (int(fields[11]) + int(fields[12])) / TICK


def status_field(pid, name):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round((len(values) - 1) * p)))]


class Caller:
    def __init__(self, args):
        self.args = args
        os.makedirs(args.work, exist_ok=True)

    def block(self, variant, calls, rate, sample_pid=None):
        """Places `calls` calls of one variant; returns (failed calls, setup times in ms,
        peak threads, peak RSS kB)."""
        name, dest, numbering, _ = variant
        inf = os.path.join(self.args.work, "callers-%s.csv" % name)
        with open(inf, "w") as f:
            f.write("SEQUENTIAL\n")
            for i in range(calls):
                number = HIT_NUMBER if numbering == "fixed" else fresh_number()
                f.write("%s;%s%d;\n" % (number, name, i))
        messages = os.path.join(self.args.work, "messages-%s.log" % name)
        if os.path.exists(messages):
            os.remove(messages)
        command = [
            "sipp", self.args.sip, "-sf", self.args.scenario, "-inf", inf, "-s", dest,
            "-m", str(calls), "-r", str(rate), "-rp", "1000", "-l", "2000",
            "-i", "127.0.0.1", "-p", str(self.args.sipp_port), "-mp", str(self.args.media_port),
            "-nostdin", "-timeout", "300s", "-recv_timeout", "20000", "-trace_msg",
            "-message_file", messages, "-nr",
        ]
        threads = rss = 0
        proc = subprocess.Popen(command, cwd=self.args.work, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            if sample_pid:
                threads = max(threads, status_field(sample_pid, "Threads"))
                rss = max(rss, status_field(sample_pid, "VmRSS"))
            time.sleep(0.05)
        setup = setup_times(messages)
        failed = calls - len(setup) if proc.returncode != 0 else 0
        return failed, setup, threads, rss


STAMP = re.compile(r"^-{10,}\s+(\d{4}-\d{2}-\d{2})\s+(\d{2}):(\d{2}):(\d{2}(?:\.\d+)?)")


def setup_times(path):
    """Setup times in ms from sipp's message trace (-trace_msg): per Call-ID, from the INVITE
    sent to the first 200 OK received (microsecond timestamps)."""
    sent, answered = {}, {}
    if not os.path.exists(path):
        return []
    with open(path, errors="replace") as f:
        stamp, direction, first, call_id = None, None, None, None

        def close():
            if stamp is None or call_id is None or first is None:
                return
            if direction == "sent" and first.startswith("INVITE "):
                sent.setdefault(call_id, stamp)
            elif direction == "received" and first.startswith("SIP/2.0 200"):
                answered.setdefault(call_id, stamp)

        for line in f:
            m = STAMP.match(line)
            if m:
                close()
                h, mi, sec = int(m.group(2)), int(m.group(3)), float(m.group(4))
                stamp, direction, first, call_id = h * 3600 + mi * 60 + sec, None, None, None
                continue
            text = line.strip()
            if stamp is None or not text:
                continue
            if direction is None:
                direction = "sent" if "message sent" in text else (
                    "received" if "message received" in text else None)
            elif first is None:
                first = text
            elif call_id is None and text.lower().startswith("call-id:"):
                call_id = text.split(":", 1)[1].strip()
        close()
    return [(answered[c] - sent[c]) * 1000 for c in answered if c in sent]


def settle(pid, baseline_threads):
    """Waits (at most 5 s) until the calls' threads are gone, then 0.3 s more."""
    until = time.time() + 5
    while time.time() < until and status_field(pid, "Threads") > baseline_threads:
        time.sleep(0.05)
    time.sleep(0.3)


def cpu_mode(args):
    caller = Caller(args)
    pid = args.pid
    # Warm-up, not counted: the hit number cached, every path run once.
    for variant in VARIANTS:
        failed, _, _, _ = caller.block(variant, 20, 20)
        if failed:
            print("warm-up: %d of 20 %s calls failed" % (failed, variant[0]))
            return 1
    baseline_threads = status_field(pid, "Threads")
    per_call = {v[0]: [] for v in VARIANTS}
    setup = {v[0]: [] for v in VARIANTS}
    peaks = {v[0]: (0, 0) for v in VARIANTS}
    failures = {v[0]: 0 for v in VARIANTS}
    started = time.time()
    for r in range(args.rounds):
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
        for variant in order:
            settle(pid, baseline_threads)
            before = cpu_seconds(pid)
            failed, times, threads, rss = caller.block(variant, args.calls, args.rate, pid)
            settle(pid, baseline_threads)
            spent = cpu_seconds(pid) - before
            name = variant[0]
            per_call[name].append(spent / args.calls)
            setup[name].extend(times)
            failures[name] += failed
            peaks[name] = (max(peaks[name][0], threads), max(peaks[name][1], rss))
        print("# round %d/%d done (%.0f s)" % (r + 1, args.rounds, time.time() - started),
              flush=True)
    ratios = {}
    for name in per_call:
        ratios[name] = [c / n for c, n in zip(per_call[name], per_call["none"])]
    miss_vs_curl = [m / c for m, c in zip(per_call["miss"], per_call["curl-app"])]
    print()
    print("%d rounds × %d calls per variant at %d calls/s; FreeSWITCH CPU (user+system, "
          "/proc/%d/stat) over each block" % (args.rounds, args.calls, args.rate, pid))
    print()
    print("| variant | CPU per call, median (µs) | ÷ no lookup: median [range] | setup p50 / p99 (ms) "
          "| threads peak | RSS peak (MB) | failed calls |")
    print("|---|---|---|---|---|---|---|")
    for name, _, _, what in VARIANTS:
        r = ratios[name]
        s = setup[name]
        print("| %s | %.0f | %.3f [%.3f–%.3f] | %s | %d | %.0f | %d |" % (
            what, statistics.median(per_call[name]) * 1e6, statistics.median(r), min(r), max(r),
            "%.2f / %.2f" % (percentile(s, 0.5), percentile(s, 0.99)) if s else "-",
            peaks[name][0], peaks[name][1] / 1024, failures[name]))
    print()
    print("miss ÷ curl application: median %.3f [%.3f–%.3f]" % (
        statistics.median(miss_vs_curl), min(miss_vs_curl), max(miss_vs_curl)))
    control = statistics.median(ratios["none-again"])
    counts = abs(control - 1) <= CONTROL_LIMIT
    print("A-versus-A control (none-again ÷ none): median %.3f — %s" % (
        control, "within ±2 %: the run counts" if counts else
        "OUTSIDE ±2 %: the run does not count (the machine was too noisy)"))
    if any(failures.values()):
        print("some calls failed: the figures are not comparable")
        return 1
    return 0 if counts else 2


def callgrind_totals(out_dir, pid, before):
    """The Ir total of the newest dump of `pid` not in `before`."""
    for _ in range(600):
        dumps = sorted(set(glob.glob(os.path.join(out_dir, "callgrind.out.%d*" % pid))) - before,
                       key=os.path.getmtime)
        for path in reversed(dumps):
            with open(path) as f:
                for line in f:
                    if line.startswith("totals:") or line.startswith("summary:"):
                        return int(line.split()[1]), set(dumps) | before
        time.sleep(0.2)
    raise RuntimeError("no callgrind dump appeared")


def callgrind_window(pid, out_dir, seen, label, work):
    """Zeroes FreeSWITCH's counters, runs `work()`, dumps them: (instructions, seconds, seen)."""
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    start = time.monotonic()
    result = work()
    seconds = time.monotonic() - start
    subprocess.run(["callgrind_control", "-d", label, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    total, seen = callgrind_totals(out_dir, pid, seen)
    return total, seconds, result, seen


def instructions_mode(args):
    """Rounds of one window per variant (rotated order) plus an idle window with no calls. The
    idle window gives FreeSWITCH's instructions per second with nothing to do (timers, SIP
    stack polling), which each variant's window also contains for its length; the net figure
    per call takes it out."""
    caller = Caller(args)
    pid = args.pid
    for variant in VARIANTS:
        failed, _, _, _ = caller.block(variant, 3, 1)
        if failed:
            print("warm-up under callgrind: %d of 3 %s calls failed" % (failed, variant[0]))
    seen = set(glob.glob(os.path.join(args.out, "callgrind.out.%d*" % pid)))
    raw = {v[0]: [] for v in VARIANTS}
    net = {v[0]: [] for v in VARIANTS}
    failures = {v[0]: 0 for v in VARIANTS}
    idle_rates = []
    for r in range(args.rounds):
        idle, idle_s, _, seen = callgrind_window(
            pid, args.out, seen, "idle-%d" % r, lambda: time.sleep(args.calls / 2.0))
        idle_rate = idle / idle_s
        idle_rates.append(idle_rate)
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
        line = []
        for variant in order:
            total, seconds, (failed, _, _, _), seen = callgrind_window(
                pid, args.out, seen, "%s-%d" % (variant[0], r),
                lambda: caller.block(variant, args.calls, 2))
            failures[variant[0]] += failed
            raw[variant[0]].append(total / args.calls)
            net[variant[0]].append((total - idle_rate * seconds) / args.calls)
            line.append("%s %.2f M" % (variant[0], net[variant[0]][-1] / 1e6))
        print("round %d: idle %.2f M instructions/s; net per call: %s" % (
            r + 1, idle_rate / 1e6, ", ".join(line)), flush=True)
    none = statistics.median(net["none"])
    print()
    print("callgrind, %d rounds × %d calls per variant at 2 calls/s; idle %.2f M instructions/s "
          "[%.2f–%.2f]" % (args.rounds, args.calls, statistics.median(idle_rates) / 1e6,
                           min(idle_rates) / 1e6, max(idle_rates) / 1e6))
    print()
    print("| variant | instructions per call (window) | net of idle [range] | − no lookup | "
          "÷ no lookup | failed calls |")
    print("|---|---|---|---|---|---|")
    for name, _, _, what in VARIANTS:
        m = statistics.median(net[name])
        print("| %s | %.0f | %.0f [%.0f–%.0f] | %+.0f | %.3f | %d |" % (
            what, statistics.median(raw[name]), m, min(net[name]), max(net[name]), m - none,
            m / none, failures[name]))
    miss, curl = statistics.median(net["miss"]), statistics.median(net["curl-app"])
    print()
    print("miss ÷ curl application: %.3f; miss ÷ Lua curl script: %.3f" % (
        miss / curl, miss / statistics.median(net["lua-curl"])))
    return 1 if any(failures.values()) else 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["cpu", "instructions"])
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--sip", required=True)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--sipp-port", type=int, required=True)
    parser.add_argument("--media-port", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rate", type=int, default=150)
    parser.add_argument("--fs-log")
    parser.add_argument("--out")
    args = parser.parse_args()
    return cpu_mode(args) if args.mode == "cpu" else instructions_mode(args)


if __name__ == "__main__":
    sys.exit(main())
