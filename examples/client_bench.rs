//! What the client library costs against HTTP, on one running node (`scripts/bench-client.sh`
//! starts one and runs this), on the shared benchmark vectors (`scripts/bench-data.sh N`):
//! the first half of the records ingested through HTTP and the second half through the
//! client (records/s each), then top-10 searches of the shared queries through each, taken
//! in turns, with their round trip p50/p99, beside the node's own time for them (`took_ms`:
//! what an in-process call costs).
//!
//!     client_bench LISTEN HTTP DATA_DIR [BATCH] [SEARCHES]   (AKOSHA_COOKIE set)

use std::time::{Duration, Instant};

use akosha::client::{Client, ClientConfig, IngestBatch, Record, SearchRequest};

const DIM: usize = 384;

/// Little-endian f32s of a file of the shared data.
fn read_f32(path: &std::path::Path) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Records `from..to` of the shared vectors, as a batch of one system.
fn batch(base: &[f32], system: &str, from: usize, to: usize) -> IngestBatch {
    IngestBatch {
        system_id: system.to_string(),
        conversations: (from..to)
            .map(|i| Record {
                id: format!("r{i}"),
                content: format!("benchmark record {i}"),
                embedding: Some(base[i * DIM..(i + 1) * DIM].to_vec()),
                timestamp: Some("2026-11-20T10:00:00Z".to_string()),
                metadata: None,
            })
            .collect(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(http), Some(data)) = (args.get(1), args.get(2), args.get(3)) else {
        return Err("usage: client_bench LISTEN HTTP DATA_DIR [BATCH] [SEARCHES]".into());
    };
    let number = |i: usize, default: usize| -> usize {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
    };
    let (size, searches) = (number(4, 500), number(5, 2000));
    let data = std::path::Path::new(data);
    let base = read_f32(&data.join("base.f32"))?;
    let queries = read_f32(&data.join("queries.f32"))?;
    let (n, nq) = (base.len() / DIM, queries.len() / DIM);
    let cookie = std::env::var("AKOSHA_COOKIE").map_err(|_| "set AKOSHA_COOKIE")?;
    let client = Client::connect(ClientConfig::new(&[listen.as_str()], &cookie)).await?;
    let web = reqwest::Client::new();
    let url = |path: &str| format!("http://{http}{path}");

    // a node that just started takes writes once it has settled (503 until then)
    let settle = Instant::now();
    loop {
        let probe = batch(&base, "settle", 0, 1);
        match client.ingest(&probe).await {
            Ok(_) => break,
            Err(e) if settle.elapsed() < Duration::from_secs(60) => {
                eprintln!("waiting for the node to take writes: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }

    // ingest: half the records through each, in batches of one system
    let half = n / 2;
    let started = Instant::now();
    for (k, from) in (0..half).step_by(size).enumerate() {
        let body = batch(
            &base,
            &format!("s{}", k % 64),
            from,
            (from + size).min(half),
        );
        let answer = web.post(url("/api/v1/ingest")).json(&body).send().await?;
        if !answer.status().is_success() {
            return Err(format!("http ingest: {}", answer.text().await?).into());
        }
    }
    let http_rate = half as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for (k, from) in (half..n).step_by(size).enumerate() {
        let body = batch(&base, &format!("s{}", k % 64), from, (from + size).min(n));
        client.ingest(&body).await?;
    }
    let client_rate = (n - half) as f64 / started.elapsed().as_secs_f64();

    // top-10 searches, in turns
    let (mut through_client, mut through_http) = (Vec::new(), Vec::new());
    // the node's own time for the same searches: what an in-process call costs
    let mut in_process = Vec::new();
    for q in 0..searches {
        let at = q % nq;
        let request = SearchRequest::vector(queries[at * DIM..(at + 1) * DIM].to_vec()).limit(10);
        let t = Instant::now();
        let answer = client.search(&request).await?;
        through_client.push(t.elapsed());
        assert_eq!(answer.results.len(), 10);
        in_process.push(Duration::from_secs_f64(answer.took_ms / 1000.0));
        let t = Instant::now();
        let answer = web
            .post(url("/api/v1/search"))
            .json(&request)
            .send()
            .await?;
        let body: serde_json::Value = answer.json().await?;
        through_http.push(t.elapsed());
        assert_eq!(body["results"].as_array().map(Vec::len), Some(10));
    }
    through_client.sort();
    through_http.sort();
    in_process.sort();
    println!(
        "records: {n} (half through each), batches of {size}, searches through each: {searches}"
    );
    println!(
        "{:<28} {:>12} {:>12} {:>12}",
        "", "client", "http", "in-process"
    );
    println!(
        "{:<28} {:>12.0} {:>12.0}",
        "ingest records/s", client_rate, http_rate
    );
    println!(
        "{:<28} {:>12.3} {:>12.3} {:>12.3}",
        "top-10 search p50 ms",
        percentile(&through_client, 0.5),
        percentile(&through_http, 0.5),
        percentile(&in_process, 0.5)
    );
    println!(
        "{:<28} {:>12.3} {:>12.3} {:>12.3}",
        "top-10 search p99 ms",
        percentile(&through_client, 0.99),
        percentile(&through_http, 0.99),
        percentile(&in_process, 0.99)
    );
    client.close();
    Ok(())
}
