//! Criterion benches of the likelihood family at the sizes: cross-entropy at
//! 8,192 × 32,000 and 65,536 × 1,000 (with logsumexp on the same matrix for comparison), the
//! Gaussian mixture at n = 10⁶, k = 16, dims = 16 (diagonal and full), and the element-wise
//! losses at 16 M elements. Per op: the GPU kernel by timestamp queries (`gpu_kernel`, where the
//! adapter has them), the GPU with data resident by wall clock (`gpu_resident`), the GPU end to
//! end through the blocking API, and the single-threaded CPU reference. Throughput counts the
//! input bytes each op must read.
//!
//! `cargo bench --bench likelihood` (on the adapter `WGPU_BACKEND` selects); filter as usual,
//! e.g. `cargo bench --bench likelihood -- cross_entropy`.

mod common;

use common::{Gen, buffer, gpu_benches, group, out_buffer};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use logdomain::reference::{gmm as cpu_gmm, likelihood as cpu};
use logdomain::{
    Bce, Covariance, CrossEntropy, GaussianNll, Gmm, GmmOp, GmmOutput, Gpu, LossOp, PoissonNll,
    RowFn, RowOp, RowsLayout, Strategy,
};

fn cross_entropy(c: &mut Criterion, gpu: &Gpu) {
    let mut rng = Gen(0x1234_5678_9abc_def1);
    for (rows, classes) in [(8192usize, 32_000usize), (65_536, 1000)] {
        let shape = format!("{rows}x{classes}");
        let x = rng.vec(rows * classes, -10.0, 10.0);
        let t: Vec<i64> = (0..rows).map(|r| (r * 7919 % classes) as i64).collect();
        let t32: Vec<i32> = t.iter().map(|&v| v as i32).collect();
        let (xb, tb) = (
            buffer(gpu, bytemuck::cast_slice(&x)),
            buffer(gpu, bytemuck::cast_slice(&t32)),
        );
        let bytes = (x.len() * 4 + rows * 4) as u64;
        let o = CrossEntropy::default();
        let op = LossOp::cross_entropy(gpu, rows, classes, &o).unwrap();
        let out = out_buffer(gpu, op.output_len());
        let mut g = group(c, "cross_entropy", bytes);
        gpu_benches(
            &mut g,
            gpu,
            "",
            &shape,
            &|e| op.record(e, &[&xb, &tb], &out).unwrap(),
            &|| op.kernel_time(gpu, &[&xb, &tb], &out).unwrap(),
        );
        g.bench_function(BenchmarkId::new("gpu_end_to_end", &shape), |b| {
            b.iter(|| gpu.cross_entropy(&x, rows, classes, &t, &o).unwrap())
        });
        g.bench_function(BenchmarkId::new("cpu_reference", &shape), |b| {
            b.iter(|| cpu::categorical(&x, rows, classes, &t, &o, false))
        });
        g.finish();
        // log-sum-exp of the same matrix, the speed cross-entropy should approach.
        let lse = RowOp::new(
            gpu,
            RowFn::Logsumexp,
            RowsLayout::contiguous(rows, classes),
            Strategy::Auto,
        )
        .unwrap();
        let lse_out = out_buffer(gpu, rows);
        let mut g = group(c, "logsumexp_same_matrix", x.len() as u64 * 4);
        gpu_benches(
            &mut g,
            gpu,
            "",
            &shape,
            &|e| lse.record(e, &xb, &lse_out).unwrap(),
            &|| gpu.kernel_time(&lse, &xb, &lse_out).unwrap(),
        );
        g.finish();
    }
}

fn gmm(c: &mut Criterion, gpu: &Gpu) {
    let mut rng = Gen(0x0bad_5eed_1234_5678);
    let (n, k, d) = (1_000_000usize, 16usize, 16usize);
    let points = rng.vec(n * d, -4.0, 4.0);
    let pb = buffer(gpu, bytemuck::cast_slice(&points));
    let weights = vec![1.0 / k as f32; k];
    let means = rng.vec(k * d, -2.0, 2.0);
    let mut full = vec![0f32; k * d * d];
    for comp in 0..k {
        for i in 0..d {
            for j in i..d {
                full[comp * d * d + i * d + j] = if i == j {
                    0.5 + rng.next()
                } else {
                    0.2 * rng.next() - 0.1
                };
            }
        }
    }
    for (kind, covariance) in [
        ("diag", Covariance::Diag(rng.vec(k * d, 0.5, 2.0))),
        ("full", Covariance::Full(full)),
    ] {
        let model = Gmm {
            weights: weights.clone(),
            means: means.clone(),
            covariance,
        };
        let shape = format!("{kind}_n{n}_k{k}_d{d}");
        let op = GmmOp::new(gpu, n, d, &model, GmmOutput::ScoreSamples).unwrap();
        let out = out_buffer(gpu, n);
        let mut g = group(c, "gmm_score_samples", (n * d * 4) as u64);
        gpu_benches(
            &mut g,
            gpu,
            "",
            &shape,
            &|e| op.record(e, &pb, &out).unwrap(),
            &|| op.kernel_time(gpu, &pb, &out).unwrap(),
        );
        g.bench_function(BenchmarkId::new("gpu_end_to_end", &shape), |b| {
            b.iter(|| gpu.gmm_score_samples(&points, n, d, &model).unwrap())
        });
        g.bench_function(BenchmarkId::new("cpu_reference", &shape), |b| {
            b.iter(|| cpu_gmm::score_samples(&points, n, d, &model))
        });
        g.finish();
    }
}

fn elementwise(c: &mut Criterion, gpu: &Gpu) {
    let mut rng = Gen(0x5151_7777_aaaa_3333);
    let n = 1usize << 24;
    let shape = "16777216";
    let x = rng.vec(n, -5.0, 5.0);
    let y = rng.vec(n, 0.0, 1.0);
    let (xb, yb) = (
        buffer(gpu, bytemuck::cast_slice(&x)),
        buffer(gpu, bytemuck::cast_slice(&y)),
    );
    let out = out_buffer(gpu, 1);
    let ops: Vec<(&str, LossOp, Vec<&wgpu::Buffer>)> = vec![
        (
            "gaussian_nll",
            LossOp::gaussian_nll(gpu, n, false, &GaussianNll::default()).unwrap(),
            vec![&xb, &yb, &yb],
        ),
        (
            "bce_with_logits",
            LossOp::binary_cross_entropy_with_logits(gpu, 4096, 4096, &Bce::default()).unwrap(),
            vec![&xb, &yb],
        ),
        (
            "poisson_nll",
            LossOp::poisson_nll(gpu, n, &PoissonNll::default()).unwrap(),
            vec![&xb, &yb],
        ),
        (
            "log_prod",
            LossOp::log_prod(gpu, 4096, 4096).unwrap(),
            vec![&yb],
        ),
    ];
    for (name, op, inputs) in &ops {
        let out_big;
        let out = if op.output_len() > 1 {
            out_big = out_buffer(gpu, op.output_len());
            &out_big
        } else {
            &out
        };
        let mut g = group(c, name, (inputs.len() * n * 4) as u64);
        gpu_benches(
            &mut g,
            gpu,
            "",
            shape,
            &|e| op.record(e, inputs, out).unwrap(),
            &|| op.kernel_time(gpu, inputs, out).unwrap(),
        );
        g.bench_function(BenchmarkId::new("gpu_end_to_end", shape), |b| {
            b.iter(|| match *name {
                "gaussian_nll" => gpu.gaussian_nll(&x, &y, &y, &GaussianNll::default()),
                "bce_with_logits" => {
                    gpu.binary_cross_entropy_with_logits(&x, &y, 4096, 4096, &Bce::default())
                }
                "poisson_nll" => gpu.poisson_nll(&x, &y, &PoissonNll::default()),
                _ => gpu.log_prod(&y, 4096, 4096),
            })
        });
        g.bench_function(BenchmarkId::new("cpu_reference", shape), |b| {
            b.iter(|| match *name {
                "gaussian_nll" => cpu::gaussian_nll(&x, &y, &y, &GaussianNll::default()),
                "bce_with_logits" => {
                    cpu::binary_cross_entropy_with_logits(&x, &y, 4096, 4096, &Bce::default())
                }
                "poisson_nll" => cpu::poisson_nll(&x, &y, &PoissonNll::default()),
                _ => cpu::log_prod(&y, 4096, 4096),
            })
        });
        g.finish();
    }
}

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("adapter: {}", gpu.info());
    elementwise(c, &gpu);
    gmm(c, &gpu);
    cross_entropy(c, &gpu);
}

criterion_group!(benches, bench);
criterion_main!(benches);
