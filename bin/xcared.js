#!/usr/bin/env -S node --max-semi-space-size=64
// A larger young generation lets the short-lived garbage of heartbeat ingest die in cheap
// scavenges instead of being promoted and swept (README "Benchmarks": PUBACK p99 roughly halves
// at 15,000 heartbeats/s). V8 reads the flag only at start, hence the shebang.
import "../dist/src/main.js";
