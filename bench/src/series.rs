//! A node_exporter-like fleet of series with realistic values, for the remote-write load.
//!
//! Every "instance" (host) exposes the same [`TEMPLATE_LEN`] series: CPU seconds by cpu and
//! mode, memory, load, network and disk counters, filesystem gauges, and an HTTP server's
//! request counters and latency histogram. Series `s` is template entry `s % TEMPLATE_LEN`
//! of instance `s / TEMPLATE_LEN`. Values are a pure function of (series, round), so any
//! connection can generate any series' samples in order without shared state: counters grow
//! by varying, non-integer increments, gauges wander, histogram buckets are cumulative and
//! consistent with `_count`. Compression figures on this data are therefore honest (no
//! all-zero or constant series).

use assay_ingest::remote_write::proto::Label;

/// Series per instance.
pub const TEMPLATE_LEN: u64 = 100;

const CPUS: u64 = 4;
const MODES: [(&str, f64); 8] = [
    ("idle", 0.62),
    ("user", 0.2),
    ("system", 0.08),
    ("iowait", 0.04),
    ("irq", 0.01),
    ("softirq", 0.02),
    ("steal", 0.02),
    ("nice", 0.01),
];
const NET_DEVICES: [&str; 3] = ["eth0", "eth1", "lo"];
const DISKS: [&str; 2] = ["sda", "sdb"];
const MOUNTS: [&str; 1] = ["/"];
const HANDLERS: [&str; 3] = ["/api/v1/query", "/api/v1/write", "/metrics"];
const CODES: [&str; 3] = ["200", "404", "500"];
const LES: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
/// Share of requests at or below each bucket bound (cumulative).
const LE_CDF: [f64; 12] = [
    0.05, 0.14, 0.33, 0.55, 0.74, 0.88, 0.95, 0.982, 0.994, 0.998, 0.9995, 1.0,
];
const REGIONS: [&str; 4] = ["eu-west", "eu-central", "us-east", "ap-south"];

/// How a series' value evolves.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Grows by about `rate` per second, rounded to `quantum`.
    Counter { rate: f64, quantum: f64 },
    /// Wanders around `base` by up to `spread`, rounded to `quantum`.
    Gauge {
        base: f64,
        spread: f64,
        quantum: f64,
    },
    /// Cumulative bucket of a histogram group: requests of the group times `cdf`.
    Bucket { handler: u64, cdf: f64 },
    /// `_count` of a histogram group.
    HistCount { handler: u64 },
    /// `_sum` of a histogram group (about 0.07 s per request).
    HistSum { handler: u64 },
    /// Requests by handler and code.
    Requests { share: f64 },
}

/// One template entry: name, extra labels, kind.
struct Entry {
    name: &'static str,
    job: &'static str,
    extra: Vec<(&'static str, String)>,
    kind: Kind,
}

fn template() -> Vec<Entry> {
    let mut t = Vec::new();
    let counter = |rate: f64, quantum: f64| Kind::Counter { rate, quantum };
    for cpu in 0..CPUS {
        for (mode, share) in MODES {
            t.push(Entry {
                name: "node_cpu_seconds_total",
                job: "node",
                extra: vec![("cpu", cpu.to_string()), ("mode", mode.to_string())],
                kind: counter(share, 0.01),
            });
        }
    }
    let gauge = |base: f64, spread: f64, quantum: f64| Kind::Gauge {
        base,
        spread,
        quantum,
    };
    let node = |name: &'static str, kind: Kind| Entry {
        name,
        job: "node",
        extra: vec![],
        kind,
    };
    t.push(node(
        "node_memory_MemAvailable_bytes",
        gauge(6.0e9, 1.5e9, 4096.0),
    ));
    t.push(node("node_load1", gauge(1.2, 1.0, 0.01)));
    t.push(node("node_procs_running", gauge(3.0, 2.0, 1.0)));
    t.push(node("node_context_switches_total", counter(4200.0, 1.0)));
    for (i, dev) in NET_DEVICES.iter().enumerate() {
        let rate = [180_000.0, 25_000.0, 4_000.0][i];
        for name in [
            "node_network_receive_bytes_total",
            "node_network_transmit_bytes_total",
        ] {
            t.push(Entry {
                name,
                job: "node",
                extra: vec![("device", dev.to_string())],
                kind: counter(rate, 1.0),
            });
        }
    }
    for dev in DISKS {
        for (name, rate, q) in [
            ("node_disk_io_time_seconds_total", 0.03, 0.001),
            ("node_disk_read_bytes_total", 90_000.0, 512.0),
            ("node_disk_written_bytes_total", 240_000.0, 512.0),
        ] {
            t.push(Entry {
                name,
                job: "node",
                extra: vec![("device", dev.to_string())],
                kind: counter(rate, q),
            });
        }
    }
    for mount in MOUNTS {
        t.push(Entry {
            name: "node_filesystem_avail_bytes",
            job: "node",
            extra: vec![
                ("device", "/dev/vda1".to_string()),
                ("fstype", "ext4".to_string()),
                ("mountpoint", mount.to_string()),
            ],
            kind: gauge(4.0e10, 2.0e9, 4096.0),
        });
    }
    for (h, handler) in HANDLERS.iter().enumerate() {
        for (c, code) in CODES.iter().enumerate() {
            t.push(Entry {
                name: "http_requests_total",
                job: "api",
                extra: vec![("handler", handler.to_string()), ("code", code.to_string())],
                kind: Kind::Requests {
                    share: [0.93, 0.05, 0.02][c] * [1.0, 0.6, 0.2][h],
                },
            });
        }
        for (le, cdf) in LES.iter().zip(LE_CDF) {
            t.push(Entry {
                name: "http_request_duration_seconds_bucket",
                job: "api",
                extra: vec![("handler", handler.to_string()), ("le", le.to_string())],
                kind: Kind::Bucket {
                    handler: h as u64,
                    cdf,
                },
            });
        }
        t.push(Entry {
            name: "http_request_duration_seconds_count",
            job: "api",
            extra: vec![("handler", handler.to_string())],
            kind: Kind::HistCount { handler: h as u64 },
        });
        t.push(Entry {
            name: "http_request_duration_seconds_sum",
            job: "api",
            extra: vec![("handler", handler.to_string())],
            kind: Kind::HistSum { handler: h as u64 },
        });
    }
    // 32 cpu + 4 node + 6 net + 6 disk + 1 fs = 49, and 3 × (3 + 12 + 2) = 51 http.
    assert_eq!(
        t.len() as u64,
        TEMPLATE_LEN,
        "template must fill TEMPLATE_LEN"
    );
    t
}

/// The fleet: label sets and value generators of `series` series.
pub struct Fleet {
    template: Vec<Entry>,
    /// Seconds of sample time between two rounds (the scrape interval).
    interval_s: f64,
}

/// SplitMix64: a pure hash of (seed) → 64 bits, so values depend only on (series, round).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn quantize(v: f64, q: f64) -> f64 {
    // Rounded to the quantum, then to 6 decimals so 0.01 steps print as they would.
    ((v / q).round() * q * 1e6).round() / 1e6
}

impl Fleet {
    /// A fleet scraped every `interval_s` seconds of sample time.
    pub fn new(interval_s: f64) -> Fleet {
        Fleet {
            template: template(),
            interval_s,
        }
    }

    /// Labels of series `s`, `__name__` first then sorted by name (as Prometheus sends).
    pub fn labels(&self, s: u64) -> Vec<Label> {
        let e = &self.template[(s % TEMPLATE_LEN) as usize];
        let inst = s / TEMPLATE_LEN;
        let mut l: Vec<(&str, String)> = vec![
            ("job", e.job.to_string()),
            (
                "instance",
                format!(
                    "host-{inst:05}:{}",
                    if e.job == "node" { 9100 } else { 8080 }
                ),
            ),
            (
                "env",
                if inst % 5 == 4 { "staging" } else { "prod" }.to_string(),
            ),
            ("region", REGIONS[(inst % 4) as usize].to_string()),
        ];
        l.extend(e.extra.iter().cloned());
        l.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(l.len() + 1);
        out.push(Label {
            name: "__name__".into(),
            value: e.name.into(),
        });
        out.extend(l.into_iter().map(|(n, v)| Label {
            name: n.into(),
            value: v,
        }));
        out
    }

    /// Requests a histogram group (instance, handler) served in round `r`.
    fn group_requests(&self, inst: u64, handler: u64, r: u64) -> f64 {
        let rate = [40.0, 25.0, 0.2][handler as usize % 3];
        let h = mix(inst.wrapping_mul(31).wrapping_add(handler) ^ r.wrapping_mul(0x5851_F42D));
        (rate * self.interval_s * (0.5 + unit(h))).round()
    }

    /// The increment of series `s` between round `r-1` and round `r` (r ≥ 1).
    fn increment(&self, s: u64, r: u64) -> f64 {
        let e = &self.template[(s % TEMPLATE_LEN) as usize];
        let inst = s / TEMPLATE_LEN;
        let h = unit(mix(s ^ r.wrapping_mul(0x2545_F491_4F6C_DD1D)));
        match e.kind {
            Kind::Counter { rate, .. } => rate * self.interval_s * (0.4 + 1.2 * h),
            Kind::Requests { share } => (share * 60.0 * self.interval_s * (0.6 + 0.8 * h)).round(),
            Kind::Bucket { handler, cdf } => (self.group_requests(inst, handler, r) * cdf).floor(),
            Kind::HistCount { handler } => self.group_requests(inst, handler, r),
            Kind::HistSum { handler } => {
                self.group_requests(inst, handler, r) * 0.07 * (0.8 + 0.4 * h)
            }
            Kind::Gauge { .. } => 0.0,
        }
    }

    /// Starting value of a counter-like series (a host that has been up for a while).
    fn initial(&self, s: u64) -> f64 {
        let e = &self.template[(s % TEMPLATE_LEN) as usize];
        let h = unit(mix(s.wrapping_add(0xA5A5)));
        match e.kind {
            Kind::Counter { rate, .. } => rate * 86_400.0 * (1.0 + 20.0 * h),
            Kind::Gauge { .. } => 0.0,
            _ => 0.0,
        }
    }

    /// A cursor that yields series `s`'s values for rounds 0, 1, 2, … in order.
    pub fn cursor(&self, s: u64) -> Cursor {
        Cursor {
            s,
            next_round: 0,
            acc: self.initial(s),
        }
    }

    /// The value at `c.next_round`, advancing the cursor.
    pub fn next_value(&self, c: &mut Cursor) -> f64 {
        let e = &self.template[(c.s % TEMPLATE_LEN) as usize];
        let r = c.next_round;
        c.next_round += 1;
        match e.kind {
            Kind::Gauge {
                base,
                spread,
                quantum,
            } => {
                // A slow wave plus noise: neighbouring samples are close, as real gauges are.
                let phase = (c.s % 97) as f64;
                let slow = ((r as f64 + phase * 13.0) / 240.0).sin();
                let noise = unit(mix(c.s ^ r.wrapping_mul(0x9E37))) - 0.5;
                quantize(
                    (base + spread * (0.8 * slow + 0.4 * noise)).max(0.0),
                    quantum,
                )
            }
            Kind::Counter { quantum, .. } => {
                if r > 0 {
                    c.acc += self.increment(c.s, r);
                }
                quantize(c.acc, quantum)
            }
            _ => {
                if r > 0 {
                    c.acc += self.increment(c.s, r);
                }
                quantize(c.acc, 1e-6)
            }
        }
    }
}

/// Where one series' value sequence stands.
#[derive(Clone, Debug)]
pub struct Cursor {
    s: u64,
    next_round: u64,
    acc: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_has_node_exporter_like_labels_and_monotone_counters() {
        let f = Fleet::new(15.0);
        let l = f.labels(0);
        let names: Vec<&str> = l.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            ["__name__", "cpu", "env", "instance", "job", "mode", "region"]
        );
        assert_eq!(l[0].value, "node_cpu_seconds_total");
        for s in 0..TEMPLATE_LEN * 2 {
            let mut c = f.cursor(s);
            let vals: Vec<f64> = (0..50).map(|_| f.next_value(&mut c)).collect();
            let name = f.labels(s)[0].value.clone();
            if name.ends_with("_total") || name.ends_with("_bucket") || name.ends_with("_count") {
                assert!(vals.windows(2).all(|w| w[1] >= w[0]), "{name} not monotone");
                // Low buckets of the rarely hit handler may stay at 0, as real ones do.
                if !name.ends_with("_bucket") {
                    assert!(vals[49] > vals[0], "{name} does not grow");
                }
            }
            assert!(vals.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let f = Fleet::new(15.0);
        // Instance 3, handler 0: find its bucket series in template order.
        let base = 3 * TEMPLATE_LEN;
        let buckets: Vec<u64> = (base..base + TEMPLATE_LEN)
            .filter(|&s| {
                let l = f.labels(s);
                l[0].value == "http_request_duration_seconds_bucket"
                    && l.iter()
                        .any(|x| x.name == "handler" && x.value == "/api/v1/query")
            })
            .collect();
        assert_eq!(buckets.len(), 12);
        let mut cursors: Vec<Cursor> = buckets.iter().map(|&s| f.cursor(s)).collect();
        for _ in 0..20 {
            let v: Vec<f64> = cursors.iter_mut().map(|c| f.next_value(c)).collect();
            assert!(v.windows(2).all(|w| w[1] >= w[0]), "{v:?}");
        }
    }
}
