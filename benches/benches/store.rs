//! Micro-benchmarks of the embedded store's hot paths: verified put and get
//! of small and piece-sized blobs, piece encoding, digesting, batch decoding.
//! Figures are relative: compare runs of the same machine, not absolute numbers.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use cas_server::config::Compression;
use cas_server::store::piece;
use cas_server::{RocksStore, StoreOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use reprovm_sdk::proto::{encode_frame, BatchDecoder};
use reprovm_sdk::Digest;

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn store_put_get(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), StoreOptions::default()).unwrap();
    let mut group = c.benchmark_group("store");
    for size in [4 << 10, 1 << 20] {
        group.throughput(Throughput::Bytes(size as u64));
        let mut seed = 0u64;
        group.bench_with_input(BenchmarkId::new("put", size), &size, |b, &size| {
            b.iter_batched(
                || {
                    seed += 1;
                    let data = noise(seed, size);
                    (Digest::of_blake3(&data), data)
                },
                |(d, data)| store.put_reader(&d, Some(data.len() as u64), &data[..]).unwrap(),
                criterion::BatchSize::SmallInput,
            )
        });
        let data = noise(u64::MAX, size);
        let d = Digest::of_blake3(&data);
        store.put_reader(&d, Some(size as u64), &data[..]).unwrap();
        group.bench_with_input(BenchmarkId::new("get_verified", size), &d, |b, d| {
            b.iter(|| {
                let (meta, _, small) = store.open_blob(d, None).unwrap();
                match small {
                    Some(bytes) => black_box(bytes.len()),
                    None => black_box(store.read_piece(&meta, 0).unwrap().len()),
                }
            })
        });
    }
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let text: Vec<u8> = b"fn main() { println!(\"hello, world\"); }\n".repeat(30_000)[..1 << 20].to_vec();
    let random = noise(7, 1 << 20);
    let mut group = c.benchmark_group("piece_encode_1MiB");
    group.throughput(Throughput::Bytes(1 << 20));
    for (name, data) in [("text", &text), ("random", &random)] {
        for (codec, comp) in [("zstd1", Compression::Zstd), ("lz4", Compression::Lz4)] {
            group.bench_function(format!("{codec}/{name}"), |b| {
                b.iter(|| piece::encode(black_box(data), comp, 1))
            });
        }
    }
    group.finish();
    let mut group = c.benchmark_group("digest_1MiB");
    group.throughput(Throughput::Bytes(1 << 20));
    group.bench_function("blake3", |b| b.iter(|| Digest::of_blake3(black_box(&random))));
    group.bench_function("sha256", |b| b.iter(|| Digest::of_sha256(black_box(&random))));
    group.finish();
}

fn batch_decode(c: &mut Criterion) {
    let mut body = BytesMut::new();
    for i in 0..1000u64 {
        let blob = noise(i, 4096);
        encode_frame(&Digest::of_blake3(&blob), &blob, &mut body);
    }
    let body: Bytes = body.freeze();
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("decode_1000x4KiB", |b| {
        b.iter(|| {
            let mut dec = BatchDecoder::new(1 << 20);
            let mut n = 0;
            for chunk in body.chunks(64 << 10) {
                dec.push(chunk);
                while let Some(f) = dec.next_frame().unwrap() {
                    n += f.data.len();
                }
            }
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(benches, store_put_get, encoding, batch_decode);
criterion_main!(benches);
