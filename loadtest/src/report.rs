//! Measurements: per-virtual-user recorders merged at the end, a per-second timeline, and the
//! report as a table, JSON and an SVG chart.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;

const MAX_MICROS: u64 = 120_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

fn coarse() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 2).expect("valid histogram bounds")
}

/// The run's clock: warm-up, then the measured window.
#[derive(Clone, Copy)]
pub struct Window {
    pub measure_from: Instant,
    pub measure_until: Option<Instant>,
}

impl Window {
    pub fn measures(&self, at: Instant) -> bool {
        at >= self.measure_from && self.measure_until.is_none_or(|until| at < until)
    }
}

/// How one request went.
#[derive(Clone, Debug)]
pub enum Outcome {
    Ok,
    /// An unexpected HTTP status.
    Status(u16),
    /// A transport failure (connect, reset, timeout).
    Transport(String),
    /// A correctness violation (e.g. two successors for one refresh token).
    Violation(String),
}

/// Progress counters shared by all virtual users.
#[derive(Default)]
pub struct Live {
    pub done: AtomicU64,
    pub failed: AtomicU64,
}

/// Requests per second and latency quantiles of one second of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Second {
    pub t: u64,
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Per-second histograms, merged from every virtual user.
pub struct Timeline {
    origin: Instant,
    slots: Mutex<Vec<Histogram<u64>>>,
}

impl Timeline {
    pub fn new(origin: Instant) -> Arc<Timeline> {
        Arc::new(Timeline { origin, slots: Mutex::new(Vec::new()) })
    }

    fn second_of(&self, at: Instant) -> usize {
        at.saturating_duration_since(self.origin).as_secs() as usize
    }

    fn merge(&self, second: usize, hist: &Histogram<u64>) {
        let mut slots = self.slots.lock();
        while slots.len() <= second {
            slots.push(coarse());
        }
        let _ = slots[second].add(hist);
    }

    pub fn seconds(&self) -> Vec<Second> {
        self.slots
            .lock()
            .iter()
            .enumerate()
            .map(|(t, h)| Second {
                t: t as u64,
                requests: h.len(),
                p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
                p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
            })
            .collect()
    }
}

/// What one virtual user measured.
pub struct Recorder {
    window: Window,
    timeline: Arc<Timeline>,
    live: Arc<Live>,
    pub latency: Histogram<u64>,
    pub ok: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub by_kind: BTreeMap<String, u64>,
    pub violations: Vec<String>,
    pub violation_count: u64,
    current: (usize, Histogram<u64>),
}

impl Recorder {
    pub fn new(window: Window, timeline: Arc<Timeline>, live: Arc<Live>) -> Recorder {
        Recorder {
            window,
            timeline,
            live,
            latency: histogram(),
            ok: 0,
            by_status: BTreeMap::new(),
            by_kind: BTreeMap::new(),
            violations: Vec::new(),
            violation_count: 0,
            current: (0, coarse()),
        }
    }

    /// Records a request that was due at `due` (its scheduled start in open loop, its actual
    /// start in closed loop) and finished now.
    pub fn record(&mut self, due: Instant, outcome: Outcome) {
        let now = Instant::now();
        if !self.window.measures(due) {
            return;
        }
        let micros = (now.saturating_duration_since(due).as_micros() as u64).clamp(1, MAX_MICROS);
        self.live.done.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Ok => {
                self.ok += 1;
                let _ = self.latency.record(micros);
                let second = self.timeline.second_of(due);
                if second != self.current.0 {
                    self.flush();
                    self.current.0 = second;
                }
                let _ = self.current.1.record(micros);
            }
            Outcome::Status(status) => {
                self.live.failed.fetch_add(1, Ordering::Relaxed);
                *self.by_status.entry(status).or_default() += 1;
            }
            Outcome::Transport(kind) => {
                self.live.failed.fetch_add(1, Ordering::Relaxed);
                *self.by_kind.entry(kind).or_default() += 1;
            }
            Outcome::Violation(what) => {
                self.live.failed.fetch_add(1, Ordering::Relaxed);
                self.violation_count += 1;
                if self.violations.len() < 20 {
                    self.violations.push(what);
                }
            }
        }
    }

    pub fn flush(&mut self) {
        if !self.current.1.is_empty() {
            self.timeline.merge(self.current.0, &self.current.1);
            self.current.1.reset();
        }
    }

    pub fn absorb(&mut self, other: Recorder) {
        let _ = self.latency.add(&other.latency);
        self.ok += other.ok;
        for (k, v) in other.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        for (k, v) in other.by_kind {
            *self.by_kind.entry(k).or_default() += v;
        }
        self.violation_count += other.violation_count;
        self.violations.extend(other.violations);
        self.violations.truncate(20);
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub targets: Vec<String>,
    pub mode: String,
    pub virtual_users: usize,
    pub measured_seconds: f64,
    pub ok: u64,
    pub throughput_per_second: f64,
    pub latency: Latency,
    pub errors_by_status: BTreeMap<u16, u64>,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub violations: u64,
    pub violation_examples: Vec<String>,
    pub generator_cpu_seconds: f64,
    pub server_cpu_seconds: Option<f64>,
    pub timeline: Vec<Second>,
}

/// What was run, for the report's header.
pub struct Run {
    pub scenario: String,
    pub targets: Vec<String>,
    pub mode: String,
    pub virtual_users: usize,
    pub measured: Duration,
    pub generator_cpu: f64,
    pub server_cpu: Option<f64>,
}

impl Report {
    pub fn build(run: Run, recorder: &Recorder, timeline: &Timeline) -> Report {
        let Run { scenario, targets, mode, virtual_users, measured, generator_cpu, server_cpu } = run;
        let h = &recorder.latency;
        let ms = |v: u64| v as f64 / 1000.0;
        Report {
            scenario,
            targets,
            mode,
            virtual_users,
            measured_seconds: measured.as_secs_f64(),
            ok: recorder.ok,
            throughput_per_second: recorder.ok as f64 / measured.as_secs_f64().max(1e-9),
            latency: Latency {
                p50_ms: ms(h.value_at_quantile(0.5)),
                p90_ms: ms(h.value_at_quantile(0.9)),
                p99_ms: ms(h.value_at_quantile(0.99)),
                p999_ms: ms(h.value_at_quantile(0.999)),
                max_ms: ms(h.max()),
                mean_ms: h.mean() / 1000.0,
            },
            errors_by_status: recorder.by_status.clone(),
            errors_by_kind: recorder.by_kind.clone(),
            violations: recorder.violation_count,
            violation_examples: recorder.violations.clone(),
            generator_cpu_seconds: generator_cpu,
            server_cpu_seconds: server_cpu,
            timeline: timeline.seconds(),
        }
    }

    pub fn print(&self) {
        println!();
        println!(
            "scenario      {} ({}, {} virtual users) against {}",
            self.scenario,
            self.mode,
            self.virtual_users,
            self.targets.join(", ")
        );
        println!("measured      {:.1} s, {} ok", self.measured_seconds, self.ok);
        println!("throughput    {:.0} /s", self.throughput_per_second);
        let l = &self.latency;
        println!(
            "latency ms    p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms
        );
        println!("errors        by status {:?}, by kind {:?}", self.errors_by_status, self.errors_by_kind);
        println!(
            "violations    {}{}",
            self.violations,
            if self.violation_examples.is_empty() {
                String::new()
            } else {
                format!(" e.g. {:?}", &self.violation_examples[..self.violation_examples.len().min(3)])
            }
        );
        match self.server_cpu_seconds {
            Some(server) => println!(
                "cpu seconds   generator {:.2}, server {:.2} (generator/server {:.2})",
                self.generator_cpu_seconds,
                server,
                self.generator_cpu_seconds / server.max(1e-9)
            ),
            None => println!("cpu seconds   generator {:.2}", self.generator_cpu_seconds),
        }
    }

    /// Writes `report.json` and `chart.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        self.chart(&dir.join("chart.svg"))?;
        println!("report        {}/report.json, {}/chart.svg", dir.display(), dir.display());
        Ok(())
    }

    fn chart(&self, path: &Path) -> anyhow::Result<()> {
        use plotters::prelude::*;
        let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (top, bottom) = root.split_vertically(320);
        let seconds = self.timeline.len().max(1) as u64;
        let max_rps = self.timeline.iter().map(|s| s.requests).max().unwrap_or(1).max(1) as f64 * 1.1;
        let max_ms = self.timeline.iter().map(|s| s.p99_ms).fold(0.0f64, f64::max).max(0.1) * 1.1;
        let title =
            format!("{} — {:.0}/s, p99 {:.2} ms", self.scenario, self.throughput_per_second, self.latency.p99_ms);
        let plot_err = |e: &dyn std::fmt::Display| anyhow::anyhow!("chart: {e}");

        let mut rps = ChartBuilder::on(&top)
            .caption(&title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0u64..seconds, 0f64..max_rps)
            .map_err(|e| plot_err(&e))?;
        rps.configure_mesh().x_desc("second").y_desc("requests/s").draw().map_err(|e| plot_err(&e))?;
        rps.draw_series(LineSeries::new(self.timeline.iter().map(|s| (s.t, s.requests as f64)), &BLUE))
            .map_err(|e| plot_err(&e))?
            .label("throughput")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));

        let mut lat = ChartBuilder::on(&bottom)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0u64..seconds, 0f64..max_ms)
            .map_err(|e| plot_err(&e))?;
        lat.configure_mesh().x_desc("second").y_desc("latency ms").draw().map_err(|e| plot_err(&e))?;
        lat.draw_series(LineSeries::new(self.timeline.iter().map(|s| (s.t, s.p50_ms)), &GREEN))
            .map_err(|e| plot_err(&e))?
            .label("p50")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
        lat.draw_series(LineSeries::new(self.timeline.iter().map(|s| (s.t, s.p99_ms)), &RED))
            .map_err(|e| plot_err(&e))?
            .label("p99")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        lat.configure_series_labels().border_style(BLACK).draw().map_err(|e| plot_err(&e))?;
        root.present().map_err(|e| plot_err(&e))?;
        Ok(())
    }
}
