//! `fhir-bench`: the FHIR load of `make bench-fhir`, run against each target in turn.
//!
//! Loads the Synthea set (hospital and practitioner batches first, then the patient
//! transactions, one at a time) into each target, then reads and vreads a sample of the loaded
//! resources at concurrency 1 and 8, creates single resources at concurrency 32, and loads the
//! set again with several transactions at once (`--parallel-load`, as a bulk loader would).
//! Prints resources/s, MB/s, requests/s, p50/p99 and the target process's peak memory
//! (VmHWM), with each target's ratio to the first.

use hds_bench::procfs::{cpu_seconds, peak_rss_mb, postgres_cpu_seconds};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::StreamExt;
use serde_json::Value;

#[derive(Parser)]
struct Args {
    /// `name=URL` or `name=URL,pid=PID` (the FHIR base URL; the pid for peak memory).
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    #[arg(long)]
    synthea: PathBuf,
    /// Reads per measurement.
    #[arg(long, default_value_t = 2000)]
    reads: usize,
    /// Single-resource creates at concurrency 32.
    #[arg(long, default_value_t = 2000)]
    creates: usize,
    /// After the first load (one bundle at a time), the set is loaded again with this many
    /// patient transactions at once, as a bulk loader sends them.
    #[arg(long, default_value_t = 4)]
    parallel_load: usize,
}

struct Target {
    name: String,
    base: String,
    pid: Option<u32>,
    /// The target's PostgreSQL, to count commits and WAL syncs (group commit).
    pg: Option<String>,
    /// The pid of the event broker the target publishes to, for its CPU.
    broker: Option<u32>,
}

fn parse_target(s: &str) -> anyhow::Result<Target> {
    let (name, rest) = s.split_once('=').context("--target name=URL[,pid=PID]")?;
    let mut parts = rest.split(',');
    let base = parts
        .next()
        .context("URL")?
        .trim_end_matches('/')
        .to_owned();
    let options: Vec<&str> = parts.collect();
    let pid = options
        .iter()
        .find_map(|p| p.strip_prefix("pid="))
        .map(str::parse)
        .transpose()?;
    let pg = options
        .iter()
        .find_map(|p| p.strip_prefix("pg="))
        .map(str::to_owned);
    let broker = options
        .iter()
        .find_map(|p| p.strip_prefix("broker="))
        .map(str::parse)
        .transpose()?;
    Ok(Target {
        name: name.to_owned(),
        base,
        pid,
        pg,
        broker,
    })
}

/// `Type/id/_history/v`, absolute or relative -> (type/id, version).
fn split_location(location: &str) -> Option<(String, String)> {
    let (path, version) = location.split_once("/_history/")?;
    let mut parts = path.rsplit('/');
    let id = parts.next()?;
    let rt = parts.next()?;
    Some((format!("{rt}/{id}"), version.to_owned()))
}

struct Loaded {
    seconds: f64,
    resources: usize,
    bytes: usize,
    /// (Type/id, version) of created resources.
    created: Vec<(String, String)>,
}

/// Loads `files` into `t`: the batches (`0-*`, organisations and practitioners) one after
/// another, then the patient transactions `concurrency` at a time.
async fn load(
    client: &reqwest::Client,
    t: &Target,
    files: &[PathBuf],
    concurrency: usize,
) -> anyhow::Result<Loaded> {
    let mut bodies = Vec::new();
    for f in files {
        let out = std::process::Command::new("bzcat").arg(f).output()?;
        if !out.status.success() {
            bail!("bzcat {}", f.display());
        }
        bodies.push(out.stdout);
    }
    let bytes = bodies.iter().map(Vec::len).sum();
    let is_batch = |f: &PathBuf| {
        f.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("0-"))
    };
    let (batches, transactions): (Vec<_>, Vec<_>) =
        files.iter().zip(bodies).partition(|(f, _)| is_batch(f));
    let mut answers = Vec::new();
    let started = Instant::now();
    for (f, body) in batches {
        answers.push((f, post_bundle(client, t, f, body).await?));
    }
    let mut loaded = futures::stream::iter(transactions)
        .map(|(f, body)| async move { post_bundle(client, t, f, body).await.map(|a| (f, a)) })
        .buffer_unordered(concurrency);
    while let Some(answer) = loaded.next().await {
        answers.push(answer?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut resources = 0;
    let mut created = Vec::new();
    for (f, answer) in answers {
        for e in answer["entry"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let s = e["response"]["status"].as_str().unwrap_or_default();
            if !s.starts_with('2') {
                bail!("{}: entry {s} in {}", t.name, f.display());
            }
            resources += 1;
            // The version comes from the location (`.../_history/v`) or the returned resource.
            let location = e["response"]["location"].as_str().unwrap_or_default();
            let found = split_location(location).or_else(|| {
                let version = e["resource"]["meta"]["versionId"].as_str()?;
                let mut parts = location.trim_end_matches('/').rsplit('/');
                let id = parts.next()?;
                let rt = parts.next()?;
                Some((format!("{rt}/{id}"), version.to_owned()))
            });
            created.extend(found);
        }
    }
    Ok(Loaded {
        seconds,
        resources,
        bytes,
        created,
    })
}

async fn post_bundle(
    client: &reqwest::Client,
    t: &Target,
    f: &std::path::Path,
    body: Vec<u8>,
) -> anyhow::Result<Value> {
    let res = client
        .post(&t.base)
        .header("content-type", "application/fhir+json")
        .body(body)
        .send()
        .await?;
    let status = res.status();
    let answer: Value = res.json().await?;
    if !status.is_success() {
        bail!("{}: {} loading {}: {answer}", t.name, status, f.display());
    }
    Ok(answer)
}

/// CPU seconds used so far by a target's server, its PostgreSQL and its broker.
struct Cpu {
    server: Option<f64>,
    postgres: f64,
    broker: Option<f64>,
}

impl Cpu {
    fn now(t: &Target) -> Self {
        Self {
            server: t.pid.and_then(cpu_seconds),
            postgres: postgres_cpu_seconds(),
            broker: t.broker.and_then(cpu_seconds),
        }
    }

    /// Prints the CPU each used since `self`, over a load that took `seconds`.
    fn report(&self, t: &Target, seconds: f64) {
        let after = Cpu::now(t);
        let Some(server) = after.server.zip(self.server).map(|(a, b)| a - b) else {
            return;
        };
        let broker = match after.broker.zip(self.broker) {
            Some((a, b)) => format!("; broker CPU {:.1} s", a - b),
            None => String::new(),
        };
        eprintln!(
            "{}: load took {seconds:.1} s; server CPU {server:.1} s; PostgreSQL CPU {:.1} s{broker}",
            t.name,
            after.postgres - self.postgres,
        );
    }
}

struct Latencies {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// (commits, WAL syncs) of the PostgreSQL at `url` so far, read with psql.
fn pg_commits_and_syncs(url: &str) -> Option<(i64, i64)> {
    let out = std::process::Command::new("psql")
        .args([
            url,
            "-Atc",
            "SELECT pg_stat_force_next_flush(); SELECT (SELECT xact_commit FROM pg_stat_database \
             WHERE datname = current_database()) || ' ' || (SELECT wal_sync FROM pg_stat_wal)",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut numbers = text.lines().last()?.split(' ').map(|n| n.parse().ok());
    Some((numbers.next()??, numbers.next()??))
}

/// Single-resource creates (`POST [base]/Patient`), `n` of them at `concurrency`.
async fn measure_creates(
    client: &reqwest::Client,
    base: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Latencies> {
    let url = format!("{base}/Patient");
    let started = Instant::now();
    let mut times: Vec<Duration> = futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let body = serde_json::json!({"resourceType": "Patient",
                    "name": [{"family": format!("Bench{i}"), "given": ["Single"]}], "gender": "other"});
                let t = Instant::now();
                let res = client
                    .post(&url)
                    .header("content-type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .await?;
                let ok = res.status().is_success();
                res.bytes().await?;
                if !ok {
                    bail!("POST {url} failed");
                }
                Ok::<_, anyhow::Error>(t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let total = started.elapsed().as_secs_f64();
    times.sort();
    let at =
        |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    Ok(Latencies {
        per_second: n as f64 / total,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    })
}

async fn measure(
    client: &reqwest::Client,
    urls: &[String],
    concurrency: usize,
) -> anyhow::Result<Latencies> {
    let started = Instant::now();
    let mut times: Vec<Duration> = futures::stream::iter(urls.iter().cloned())
        .map(|url| {
            let client = client.clone();
            async move {
                let t = Instant::now();
                let res = client.get(&url).send().await?;
                let ok = res.status().is_success();
                res.bytes().await?;
                if !ok {
                    bail!("GET {url} failed");
                }
                Ok::<_, anyhow::Error>(t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let total = started.elapsed().as_secs_f64();
    times.sort();
    let at =
        |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    Ok(Latencies {
        per_second: urls.len() as f64 / total,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let targets: Vec<Target> = args
        .targets
        .iter()
        .map(|s| parse_target(s))
        .collect::<Result<_, _>>()?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.synthea)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.to_string_lossy().ends_with(".json.bz2"));
    files.sort();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()?;

    let mut rows = Vec::new();
    for t in &targets {
        eprintln!("{}: loading {} bundles", t.name, files.len());
        let before = Cpu::now(t);
        let loaded = load(&client, t, &files, 1).await?;
        before.report(t, loaded.seconds);
        let step = (loaded.created.len() / args.reads).max(1);
        let sample: Vec<&(String, String)> = loaded
            .created
            .iter()
            .step_by(step)
            .take(args.reads)
            .collect();
        let reads: Vec<String> = sample
            .iter()
            .map(|(r, _)| format!("{}/{r}", t.base))
            .collect();
        let vreads: Vec<String> = sample
            .iter()
            .map(|(r, v)| format!("{}/{r}/_history/{v}", t.base))
            .collect();
        let mut m = Vec::new();
        for c in [1, 8] {
            m.push(measure(&client, &reads, c).await?);
            m.push(measure(&client, &vreads, c).await?);
        }
        let before = t.pg.as_deref().and_then(pg_commits_and_syncs);
        m.push(measure_creates(&client, &t.base, args.creates, 32).await?);
        if let (Some((c0, s0)), Some((c1, s1))) =
            (before, t.pg.as_deref().and_then(pg_commits_and_syncs))
        {
            eprintln!(
                "{}: {} creates at concurrency 32: {} PostgreSQL commits, {} WAL syncs ({:.2} commits per sync)",
                t.name,
                args.creates,
                c1 - c0,
                s1 - s0,
                (c1 - c0) as f64 / (s1 - s0).max(1) as f64
            );
        }
        eprintln!(
            "{}: loading {} bundles again, {} transactions at a time",
            t.name,
            files.len(),
            args.parallel_load
        );
        let before = Cpu::now(t);
        let again = load(&client, t, &files, args.parallel_load).await?;
        before.report(t, again.seconds);
        rows.push((t, loaded, again, m, peak_rss_mb(t.pid)));
    }

    println!(
        "\n## FHIR load and reads: {} Synthea bundles\n",
        files.len()
    );
    println!("| target | resources | load s | resources/s | MB/s | resources/s, {} at a time | read c1 req/s (p50/p99 ms) | vread c1 | read c8 | vread c8 | create c32 | peak RSS MB |", args.parallel_load);
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (t, l, again, m, rss) in &rows {
        let cell = |x: &Latencies| format!("{:.0} ({:.2}/{:.2})", x.per_second, x.p50_ms, x.p99_ms);
        println!(
            "| {} | {} | {:.1} | {:.0} | {:.1} | {:.0} | {} | {} | {} | {} | {} | {} |",
            t.name,
            l.resources,
            l.seconds,
            l.resources as f64 / l.seconds,
            l.bytes as f64 / 1e6 / l.seconds,
            again.resources as f64 / again.seconds,
            cell(&m[0]),
            cell(&m[1]),
            cell(&m[2]),
            cell(&m[3]),
            cell(&m[4]),
            rss.map_or("-".into(), |r| format!("{r:.0}")),
        );
    }
    if let [(first, fl, fa, fm, frss), rest @ ..] = rows.as_slice() {
        for (t, l, a, m, rss) in rest {
            println!(
                "\n{} / {}: resources/s x{:.2} (one at a time), x{:.2} ({} at a time); read c8 req/s x{:.2}; vread c8 req/s x{:.2}; create c32 req/s x{:.2}; peak memory x{}",
                first.name,
                t.name,
                (fl.resources as f64 / fl.seconds) / (l.resources as f64 / l.seconds),
                (fa.resources as f64 / fa.seconds) / (a.resources as f64 / a.seconds),
                args.parallel_load,
                fm[2].per_second / m[2].per_second,
                fm[3].per_second / m[3].per_second,
                fm[4].per_second / m[4].per_second,
                match (frss, rss) {
                    (Some(a), Some(b)) => format!("{:.2}", a / b),
                    _ => "-".into(),
                },
            );
        }
    }
    Ok(())
}
