//! Micro-benchmarks of the per-input and per-byte hot paths:
//! `cargo bench -p volley --bench hot_paths`.

use std::io::Cursor;

use volley::http::body::BodySink;
use volley::input::{InputSource, LineSource, Template, TemplateSource};
use volley::pipeline::process::{PageRules, Paginate, process};

fn main() {
    divan::main();
}

/// Parsing and validating URL lines, per 10,000 lines.
#[divan::bench]
fn parse_10k_url_lines(bencher: divan::Bencher) {
    let text: String = (0..10_000)
        .map(|i| format!("https://host-{}.example.com/path/{i}?q={i}\n", i % 50))
        .collect();
    bencher.bench(|| {
        let source = LineSource::new(Cursor::new(text.as_bytes()));
        divan::black_box(source.filter(|i| i.is_ok()).count())
    });
}

/// Expanding a template lazily, per 10,000 URLs.
#[divan::bench]
fn expand_10k_template_urls(bencher: divan::Bencher) {
    let template =
        Template::parse("https://api.example.com/{a,b}/items/{1..5000}").expect("valid template");
    bencher.bench(|| {
        let mut source = TemplateSource::new(template.clone());
        let n = source.by_ref().count();
        divan::black_box((n, source.consumed()))
    });
}

/// Hashing a 16 MiB body arriving in 16 KiB chunks (the hash-only sink).
#[divan::bench]
fn hash_16mib_body(bencher: divan::Bencher) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let chunk = bytes::Bytes::from(vec![7u8; 16 * 1024]);
    bencher.bench(|| {
        runtime.block_on(async {
            let mut sink = BodySink::hashing();
            for _ in 0..1024 {
                sink.write(chunk.clone())
                    .await
                    .expect("hashing cannot fail");
            }
            divan::black_box(sink.finish().await.expect("hashing cannot fail"))
        })
    });
}

/// Saving a 64 MiB body arriving in 16 KiB chunks (hash inline, 1 MiB writes).
#[divan::bench(sample_count = 10)]
fn save_64mib_body(bencher: divan::Bencher) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("a runtime");
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().to_path_buf();
    volley::http::body::prepare_dir(&dir).expect("a bodies directory");
    let chunk = bytes::Bytes::from(vec![9u8; 16 * 1024]);
    bencher.bench(|| {
        runtime.block_on(async {
            let mut sink = BodySink::saving(&dir, "bench");
            for _ in 0..4096 {
                sink.write(chunk.clone())
                    .await
                    .expect("writing to a temp dir");
            }
            divan::black_box(sink.finish().await.expect("writing to a temp dir"))
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Processing one JSON page of 100 items with a next link.
#[divan::bench]
fn process_json_page(bencher: divan::Bencher) {
    let items: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"id":{i},"name":"item {i}"}}"#))
        .collect();
    let body = format!(r#"{{"items":[{}],"next":"/api?page=2"}}"#, items.join(","));
    let rules = PageRules {
        paginate: Some(Paginate::JsonNext("/next".into())),
        items: Some("/items".into()),
        ..PageRules::default()
    };
    let url = url::Url::parse("https://api.example.com/api?page=1").expect("a URL");
    let crawl = volley::pipeline::process::Crawl {
        asked: &url,
        seed: &url,
        content_type: None,
        respect_robots: false,
    };
    bencher.bench(|| divan::black_box(process(&rules, &url, 1, None, crawl, body.as_bytes())));
}
