//! The log-sum-exp family on whatever adapter `Gpu::new()` finds (run with WGPU_BACKEND=vulkan
//! and WGPU_BACKEND=gl): the semantics table, the accuracy contract on every strategy, special
//! values, determinism, the encoder-level API on a test-owned device, binding-size chunking,
//! and errors.

mod common;

use common::*;
use logdomain::{AdapterChoice, Error, Gpu, RowFn, RowOp, RowsLayout, SENTINEL_BITS, Strategy};
use wgpu::util::DeviceExt;

const NEG_INF: f32 = f32::NEG_INFINITY;
const INF: f32 = f32::INFINITY;
const NAN: f32 = f32::NAN;

fn same(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan() && a.to_bits() != SENTINEL_BITS) || a == b
}

fn assert_row(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(same(*g, *w), "{what}: got {got:?}, want {want:?}");
    }
}

/// (row, logsumexp, log_softmax, softmax)
type TableRow = (Vec<f32>, f32, Vec<f32>, Vec<f32>);

/// The README's semantics table, entry by entry, on every strategy and through the blocking API.
#[test]
fn semantics_table() {
    let gpu = gpu();
    let ln2 = std::f32::consts::LN_2;
    let table: Vec<TableRow> = vec![
        (
            vec![NEG_INF, NEG_INF],
            NEG_INF,
            vec![NAN, NAN],
            vec![NAN, NAN],
        ),
        (vec![0.0, NEG_INF], 0.0, vec![0.0, NEG_INF], vec![1.0, 0.0]),
        (
            vec![NAN, 1.0, NEG_INF],
            NAN,
            vec![NAN, NAN, NAN],
            vec![NAN, NAN, NAN],
        ),
        (
            vec![1.0, NAN, INF],
            NAN,
            vec![NAN, NAN, NAN],
            vec![NAN, NAN, NAN],
        ),
        (
            vec![INF, 1.0, NEG_INF],
            INF,
            vec![NAN, NEG_INF, NEG_INF],
            vec![NAN, NAN, NAN],
        ),
        (vec![INF, INF], INF, vec![NAN, NAN], vec![NAN, NAN]),
        (
            vec![1000.0, 1000.0],
            1000.0 + ln2,
            vec![-ln2, -ln2],
            vec![0.5, 0.5],
        ),
        (vec![3e38, 3e38], 3e38, vec![-ln2, -ln2], vec![0.5, 0.5]),
    ];
    let strategies = strategies(gpu);
    for (row, lse, lsm, sm) in &table {
        let n = row.len();
        for &s in &strategies {
            let what = format!("{row:?} {s:?}");
            assert_row(&run_op(gpu, RowFn::Logsumexp, row, 1, n, s), &[*lse], &what);
            assert_row(&run_op(gpu, RowFn::LogSoftmax, row, 1, n, s), lsm, &what);
            assert_row(&run_op(gpu, RowFn::Softmax, row, 1, n, s), sm, &what);
        }
        assert_row(&gpu.logsumexp(row, 1, n).unwrap(), &[*lse], "blocking");
        assert_row(&gpu.log_softmax(row, 1, n).unwrap(), lsm, "blocking");
        assert_row(&gpu.softmax(row, 1, n).unwrap(), sm, "blocking");
    }
    // [0, -40]: log1p precision, as SciPy >= 1.15 (PyTorch gives 0).
    let tiny = 4.248_354e-18_f32; // SciPy >= 1.15: 4.2483543e-18
    for &s in &strategies {
        let lse = run_op(gpu, RowFn::Logsumexp, &[0.0, -40.0], 1, 2, s)[0];
        assert!(
            (lse - tiny).abs() <= 4.0 * tiny * f32::EPSILON,
            "{s:?}: {lse:e}"
        );
        let sm = run_op(gpu, RowFn::Softmax, &[0.0, -40.0], 1, 2, s);
        assert_eq!(sm[0], 1.0);
        assert!(
            (sm[1] - tiny).abs() <= 4.0 * tiny * f32::EPSILON,
            "{s:?}: {sm:?}"
        );
        let lsm = run_op(gpu, RowFn::LogSoftmax, &[0.0, -40.0], 1, 2, s);
        assert!(
            (lsm[0] + tiny).abs() <= 4.0 * tiny * f32::EPSILON && lsm[1] == -40.0,
            "{s:?}: {lsm:?}"
        );
    }
    // cols = 0: logsumexp of an empty row is -inf; softmax and log_softmax are empty.
    for &s in &strategies {
        assert_row(
            &run_op(gpu, RowFn::Logsumexp, &[], 3, 0, s),
            &[NEG_INF; 3],
            "cols = 0",
        );
    }
    assert_row(
        &gpu.logsumexp(&[], 3, 0).unwrap(),
        &[NEG_INF; 3],
        "cols = 0 blocking",
    );
    assert!(gpu.softmax(&[], 3, 0).unwrap().is_empty());
    assert!(gpu.log_softmax(&[], 3, 0).unwrap().is_empty());
}

/// The accuracy contract on every shape the issue names, every strategy, every function.
#[test]
fn accuracy_on_every_shape_and_strategy() {
    let gpu = gpu();
    let mut rng = Rng(7);
    for (rows, cols) in [
        (1, 1),
        (3, 7),
        (1, (1 << 20) + 3),
        (70_000, 5),
        (2, 300_000),
        (1000, 1000),
    ] {
        let x = rng.vec(rows * cols, -100.0, 100.0);
        // The oracle once per shape: every strategy and function is checked against it.
        let t = truths(&x, rows, cols);
        for &s in &strategies(gpu) {
            for func in FUNCS {
                let what = format!("{rows}x{cols} {s:?} {func:?}");
                match try_run_op(gpu, func, &x, rows, cols, s) {
                    Err(Error::Limit(_)) if lane_limit_applies(gpu, s, cols) => {}
                    Err(e) => panic!("{what}: {e}"),
                    Ok(_) if lane_limit_applies(gpu, s, cols) => {
                        panic!("{what}: lane limit not enforced")
                    }
                    Ok(got) => check_with(func, &got, &x, rows, cols, &t, &what),
                }
            }
        }
        check_with(
            RowFn::Logsumexp,
            &gpu.logsumexp(&x, rows, cols).unwrap(),
            &x,
            rows,
            cols,
            &t,
            "blocking",
        );
    }
}

/// Rows of 65,536 entries, the longest one invocation walks a 16-byte word a step (16,384 words,
/// read and, for softmax and log_softmax, read again to be written): `ThreadVec4` and `Auto`
/// (which takes them to `ThreadVec4` on software adapters when there are 128 rows or more) meet
/// the contract, so no loop of the walk ends early on llvmpipe (65,535 iterations an invocation).
#[test]
fn rows_of_16384_words_on_one_invocation() {
    let gpu = gpu();
    let mut rng = Rng(29);
    let (rows, cols) = (128, 65_536);
    let x = rng.vec(rows * cols, -60.0, 60.0);
    let t = truths(&x, rows, cols);
    for s in [Strategy::Auto, Strategy::ThreadVec4] {
        for func in FUNCS {
            let what = format!("{rows}x{cols} {s:?} {func:?}");
            let op = RowOp::new(gpu, func, RowsLayout::contiguous(rows, cols), s).unwrap();
            if s == Strategy::Auto && gpu.info().device_type == wgpu::DeviceType::Cpu {
                assert_eq!(op.strategy(), Strategy::ThreadVec4, "{what}");
            }
            let got = run_op(gpu, func, &x, rows, cols, s);
            check_with(func, &got, &x, rows, cols, &t, &what);
        }
    }
}

/// Rows of widely different scales, -inf masks, all-masked rows, +inf, NaN, huge and tiny
/// values, all in one batch; short rows and rows long enough for the workgroup kernels.
#[test]
fn special_values_and_mixed_scales_in_one_batch() {
    let gpu = gpu();
    let mut rng = Rng(11);
    for cols in [37, 3000] {
        let mut x = Vec::new();
        let mut rows = 0;
        let mut push = |row: Vec<f32>| {
            assert_eq!(row.len(), cols);
            x.extend(row);
            rows += 1;
        };
        for scale in [1e-6f32, 1e-3, 1.0, 10.0, 100.0, 1e4, 1e30] {
            push(rng.vec(cols, -scale, scale));
        }
        let mut masked = rng.vec(cols, -5.0, 5.0);
        for (j, v) in masked.iter_mut().enumerate() {
            if j % 3 != 1 {
                *v = NEG_INF;
            }
        }
        push(masked);
        push(vec![NEG_INF; cols]);
        let mut one_left = vec![NEG_INF; cols];
        one_left[cols / 2] = -7.5;
        push(one_left);
        let mut with_inf = rng.vec(cols, -1.0, 1.0);
        with_inf[cols - 1] = INF;
        push(with_inf);
        let mut with_nan = rng.vec(cols, -1.0, 1.0);
        with_nan[0] = NAN;
        push(with_nan);
        let mut huge = rng.vec(cols, -3e38, 3e38);
        huge[1] = 3e38;
        huge[2] = -3e38;
        push(huge);
        push(vec![3e38; cols]);
        let mut tiny = vec![-1e30; cols];
        tiny[3] = 0.0;
        push(tiny);
        push(vec![-1e30; cols]);
        let mut denormal = rng.vec(cols, -1e-40, 1e-40);
        denormal[0] = f32::MIN_POSITIVE;
        push(denormal);
        for &s in &strategies(gpu) {
            for func in FUNCS {
                let got = run_op(gpu, func, &x, rows, cols, s);
                check(
                    func,
                    &got,
                    &x,
                    rows,
                    cols,
                    &format!("mixed {cols} {s:?} {func:?}"),
                );
            }
        }
    }
}

/// Same input, same device: bit-identical output, run after run, for every strategy.
#[test]
fn results_are_bit_identical_across_runs() {
    let gpu = gpu();
    let mut rng = Rng(3);
    let (rows, cols) = (64, 12_000);
    let x = rng.vec(rows * cols, -30.0, 30.0);
    for &s in &strategies(gpu) {
        for func in [RowFn::Logsumexp, RowFn::LogSoftmax] {
            let a = run_op(gpu, func, &x, rows, cols, s);
            let b = run_op(gpu, func, &x, rows, cols, s);
            let same = a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same, "{s:?} {func:?} differs between runs");
        }
    }
    let a = gpu.logsumexp(&x, rows, cols).unwrap();
    let b = gpu.logsumexp(&x, rows, cols).unwrap();
    assert_eq!(
        bytemuck::cast_slice::<f32, u32>(&a),
        bytemuck::cast_slice::<f32, u32>(&b)
    );
}

/// The release default: a `Gpu` that leaves its reused output buffers as they are between calls
/// (no sentinel, no clear) returns the same bits as the sentinel-filled one, when a larger
/// result of other values sits in the buffer before each call — for softmax, log_softmax,
/// logsumexp and an N-d reduction, and for results large enough to be returned in huge pages.
#[test]
fn reused_outputs_left_unfilled_give_the_same_bits() {
    let filled = gpu();
    let bare = Gpu::new().unwrap();
    bare.fill_outputs_with_sentinel(false);
    let mut rng = Rng(11);
    let big = rng.vec(1100 * 1024, -5.0, 5.0);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let run = |g: &Gpu, func: RowFn, x: &[f32], rows: usize, cols: usize| match func {
        RowFn::Softmax => g.softmax(x, rows, cols),
        RowFn::LogSoftmax => g.log_softmax(x, rows, cols),
        _ => g.logsumexp(x, rows, cols),
    };
    for (rows, cols) in [(1024usize, 1024usize), (3, 1000), (777, 5), (1, 1)] {
        let x = rng.vec(rows * cols, -40.0, 40.0);
        for func in [RowFn::Softmax, RowFn::LogSoftmax, RowFn::Logsumexp] {
            // The buffers first hold a larger result of other values.
            run(&bare, func, &big, 1100, 1024).unwrap();
            let got = run(&bare, func, &x, rows, cols).unwrap();
            let want = run(filled, func, &x, rows, cols).unwrap();
            assert_eq!(bits(&got), bits(&want), "{func:?} {rows}x{cols}");
        }
        bare.reduce_axes(RowFn::LogSoftmax, &big, &[1100, 1024], 0, false)
            .unwrap();
        let got = bare
            .reduce_axes(RowFn::LogSoftmax, &x, &[rows, cols], 0, false)
            .unwrap();
        let want = filled
            .reduce_axes(RowFn::LogSoftmax, &x, &[rows, cols], 0, false)
            .unwrap();
        assert_eq!(got.shape, want.shape);
        assert_eq!(
            bits(&got.values),
            bits(&want.values),
            "axis 0 {rows}x{cols}"
        );
    }
}

/// The encoder-level API on a device the test created itself: offsets, an input row stride, a
/// strided output, three ops recorded into one encoder, one submit. Entries between strided
/// output rows keep their contents.
#[test]
fn encoder_level_ops_share_one_submit_on_a_caller_device() {
    let (device, queue) = own_device(|_| {});
    let gpu = Gpu::from_device(device.clone(), queue.clone());
    gpu.fill_outputs_with_sentinel(true);
    let (rows, cols, in_stride, out_stride) = (300, 129, 133, 131);
    let mut rng = Rng(5);
    let dense = rng.vec(rows * cols, -20.0, 20.0);
    // Input at byte offset 4 * 5 (not a binding alignment), rows padded to in_stride.
    let in_off = 5usize;
    let mut padded = vec![12345.0f32; in_off + rows * in_stride];
    for r in 0..rows {
        padded[in_off + r * in_stride..][..cols].copy_from_slice(&dense[r * cols..][..cols]);
    }
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let input = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&padded),
        usage: wgpu::BufferUsages::STORAGE,
    });
    let marker = -777.0f32;
    let out_off = 3usize;
    let out_len = out_off + rows * out_stride;
    let make_out = || {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&vec![marker; out_len]),
            usage,
        })
    };
    let (lse_out, sm_out, lsm_out) = (make_out(), make_out(), make_out());
    let layout = RowsLayout {
        rows,
        cols,
        input_offset: (in_off * 4) as u64,
        input_stride: in_stride,
        output_offset: (out_off * 4) as u64,
        output_stride: out_stride,
        input_format: logdomain::InputFormat::F32,
        output_format: logdomain::OutputFormat::F32,
    };
    let mut encoder = device.create_command_encoder(&Default::default());
    for (func, out) in [
        (RowFn::Logsumexp, &lse_out),
        (RowFn::Softmax, &sm_out),
        (RowFn::LogSoftmax, &lsm_out),
    ] {
        let op = RowOp::new(&gpu, func, layout, Strategy::Auto).unwrap();
        op.record(&mut encoder, &input, out).unwrap();
    }
    queue.submit([encoder.finish()]);
    let lse = gpu.read_f32(&lse_out, (out_len * 4) as u64).unwrap();
    assert!(
        lse[..out_off]
            .iter()
            .chain(&lse[out_off + rows..])
            .all(|&v| v == marker)
    );
    check_lse(
        &lse[out_off..out_off + rows],
        &dense,
        rows,
        cols,
        "encoder lse",
    );
    for (func, out) in [(RowFn::Softmax, &sm_out), (RowFn::LogSoftmax, &lsm_out)] {
        let all = gpu.read_f32(out, (out_len * 4) as u64).unwrap();
        let mut got = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            let row = &all[out_off + r * out_stride..][..out_stride];
            got.extend_from_slice(&row[..cols]);
            assert!(
                row[cols..].iter().all(|&v| v == marker),
                "{func:?}: gap between rows written"
            );
        }
        assert!(all[..out_off].iter().all(|&v| v == marker));
        check(func, &got, &dense, rows, cols, &format!("encoder {func:?}"));
    }
}

/// A device whose storage bindings hold 64 KiB and whose grids are 256 workgroups wide: inputs
/// are processed in windows of rows, a row larger than a binding is split across dispatches,
/// and grids fold into two dimensions.
#[test]
fn small_binding_limits_split_rows_and_windows() {
    let (device, queue) = own_device(|l| {
        l.max_storage_buffer_binding_size = 64 * 1024;
        l.max_compute_workgroups_per_dimension = 256;
    });
    let gpu = Gpu::from_device(device, queue);
    gpu.fill_outputs_with_sentinel(true);
    let mut rng = Rng(9);
    for (rows, cols) in [(3, 100_003), (2000, 100), (1000, 5)] {
        let x = rng.vec(rows * cols, -50.0, 50.0);
        for &s in &strategies(&gpu) {
            for func in FUNCS {
                let fits = cols * 4 + 256 <= 64 * 1024;
                if !fits
                    && !matches!(
                        s,
                        Strategy::Auto | Strategy::SplitRow | Strategy::SplitRowThreads
                    )
                    || lane_limit_applies(&gpu, s, cols)
                {
                    let err = RowOp::new(&gpu, func, RowsLayout::contiguous(rows, cols), s).err();
                    assert!(matches!(err, Some(Error::Limit(_))), "{s:?}: {err:?}");
                    continue;
                }
                let got = run_op(&gpu, func, &x, rows, cols, s);
                check(
                    func,
                    &got,
                    &x,
                    rows,
                    cols,
                    &format!("small limits {rows}x{cols} {s:?} {func:?}"),
                );
            }
        }
        check_log_softmax(
            &gpu.log_softmax(&x, rows, cols).unwrap(),
            &x,
            rows,
            cols,
            "small limits blocking",
        );
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let gpu = gpu();
    let err = gpu.logsumexp(&[1.0, 2.0, 3.0], 2, 2).unwrap_err();
    assert_eq!(
        err,
        Error::InputLength {
            what: "x",
            expected: 4,
            actual: 3
        }
    );
    assert!(err.to_string().contains("rows × cols"));
    assert!(matches!(
        gpu.softmax(&[1.0], usize::MAX, 2),
        Err(Error::Shape(_))
    ));

    let device = gpu.device();
    let layout = RowsLayout::contiguous(4, 8);
    let op = RowOp::new(gpu, RowFn::Softmax, layout, Strategy::Auto).unwrap();
    let buf = |size, usage| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage,
            mapped_at_creation: false,
        })
    };
    let storage = wgpu::BufferUsages::STORAGE;
    let input = buf(128, storage);
    let mut enc = device.create_command_encoder(&Default::default());
    let small = op.record(&mut enc, &input, &buf(64, storage)).unwrap_err();
    assert!(small.to_string().contains("needs 128"), "{small}");
    let usage = op
        .record(&mut enc, &input, &buf(128, wgpu::BufferUsages::COPY_DST))
        .unwrap_err();
    assert!(usage.to_string().contains("STORAGE"), "{usage}");
    let aliased = op.record(&mut enc, &input, &input).unwrap_err();
    assert!(
        aliased.to_string().contains("different buffers"),
        "{aliased}"
    );
    let short_in = op
        .record(&mut enc, &buf(64, storage), &buf(128, storage))
        .unwrap_err();
    assert!(short_in.to_string().contains("input"), "{short_in}");
    // Nothing invalid was recorded: the encoder still finishes and submits cleanly.
    gpu.queue().submit([enc.finish()]);

    let misaligned = RowsLayout {
        input_offset: 2,
        ..layout
    };
    assert!(matches!(
        RowOp::new(gpu, RowFn::Logsumexp, misaligned, Strategy::Auto),
        Err(Error::Buffer(_))
    ));
    let narrow = RowsLayout {
        input_stride: 7,
        ..layout
    };
    assert!(matches!(
        RowOp::new(gpu, RowFn::Logsumexp, narrow, Strategy::Auto),
        Err(Error::Shape(_))
    ));
    let sub = RowOp::new(gpu, RowFn::Logsumexp, layout, Strategy::SubgroupPerRow);
    assert_eq!(sub.is_ok(), gpu.has_subgroups(), "{:?}", sub.err());
    if !gpu.has_subgroups() {
        assert!(sub.err().unwrap().to_string().contains("SUBGROUP"));
    }
    let hint = Error::NoAdapter("none".into()).to_string();
    assert!(
        hint.contains("mesa-vulkan-drivers") && hint.contains("llvmpipe"),
        "{hint}"
    );
}

/// Adapter selection without environment variables: the adapters of the backend under test are
/// listed, the device under test's adapter is among them and can be chosen by name; an unknown
/// backend is an `Error::Value` and an unmatched name an `Error::NoAdapter` naming the adapters.
#[test]
fn adapter_choice() {
    let gpu = gpu();
    let backend = format!("{:?}", gpu.info().backend).to_lowercase();
    let listed = Gpu::adapters(Some(&backend)).expect("adapters");
    assert!(
        listed.iter().any(|a| a.name == gpu.info().name),
        "{} not among {listed:?}",
        gpu.info().name
    );
    let choice = AdapterChoice {
        backend: Some(backend.clone()),
        name: Some(gpu.info().name.to_uppercase()),
        power: None,
    };
    let chosen = Gpu::with_choice(&choice).expect("the device under test's adapter by name");
    chosen.fill_outputs_with_sentinel(true);
    assert_eq!(chosen.info().name, gpu.info().name);
    assert_eq!(chosen.info().backend, gpu.info().backend);
    let x = [0.0f32, 1.0, 2.0];
    assert_eq!(
        chosen.logsumexp(&x, 1, 3).unwrap()[0].to_bits(),
        gpu.logsumexp(&x, 1, 3).unwrap()[0].to_bits()
    );
    let unknown = AdapterChoice {
        backend: Some("vulkan,glide".into()),
        ..Default::default()
    };
    match Gpu::with_choice(&unknown) {
        Err(Error::Value(why)) => assert!(why.contains("\"glide\""), "{why}"),
        other => panic!(
            "unknown backend: {:?}",
            other.map(|g| g.info().name.clone())
        ),
    }
    assert!(matches!(Gpu::adapters(Some("glide")), Err(Error::Value(_))));
    let nameless = AdapterChoice {
        backend: Some(backend),
        name: Some("no adapter is called this".into()),
        power: None,
    };
    match Gpu::with_choice(&nameless) {
        Err(Error::NoAdapter(why)) => assert!(why.contains(&gpu.info().name), "{why}"),
        other => panic!("unmatched name: {:?}", other.map(|g| g.info().name.clone())),
    }
}

/// GPU timestamps around an op's compute pass, where the adapter has them (lavapipe does, GL
/// does not); bad query indices are errors, not wgpu validation panics.
#[test]
fn kernel_time_from_timestamps() {
    let gpu = gpu();
    let (rows, cols) = (512, 1000);
    let x = Rng(1).vec(rows * cols, -5.0, 5.0);
    let device = gpu.device();
    let input = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&x),
        usage: wgpu::BufferUsages::STORAGE,
    });
    let op = RowOp::new(
        gpu,
        RowFn::LogSoftmax,
        RowsLayout::contiguous(rows, cols),
        Strategy::Auto,
    )
    .unwrap();
    let output = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: op.output_bytes_needed(),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let has = device.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    let t = gpu.kernel_time(&op, &input, &output).unwrap();
    assert_eq!(t.is_some(), has, "{t:?}");
    if let Some(t) = t {
        assert!(
            t > std::time::Duration::ZERO && t < std::time::Duration::from_secs(10),
            "{t:?}"
        );
        // The timed recording computed the op as well.
        let got = gpu.read_f32(&output, op.output_bytes_needed()).unwrap();
        check_log_softmax(&got, &x, rows, cols, "timed");
        let queries = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: None,
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let mut enc = device.create_command_encoder(&Default::default());
        let err = op
            .record_timed(&mut enc, &input, &output, &queries, 1)
            .unwrap_err();
        assert!(err.to_string().contains("past the query set"), "{err}");
        let occlusion = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: None,
            ty: wgpu::QueryType::Occlusion,
            count: 2,
        });
        assert!(
            op.record_timed(&mut enc, &input, &output, &occlusion, 0)
                .is_err()
        );
        gpu.queue().submit([enc.finish()]);
    }
}

/// Blocking calls from several threads at once share one `Gpu` and each get their own answer.
#[test]
fn blocking_calls_from_several_threads() {
    let gpu = gpu();
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            scope.spawn(move || {
                let (rows, cols) = (50 + t as usize, 300 + 7 * t as usize);
                let x = Rng(100 + t).vec(rows * cols, -30.0, 30.0);
                for _ in 0..3 {
                    let got = gpu.log_softmax(&x, rows, cols).unwrap();
                    check_log_softmax(&got, &x, rows, cols, &format!("thread {t}"));
                }
            });
        }
    });
}

/// A `Gpu` on the first adapter of `backends`; a missing one is a failure that says what to
/// install, never a skip.
fn gpu_on(backends: wgpu::Backends, install: &str) -> Gpu {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .unwrap_or_else(|e| panic!("no {backends:?} adapter ({e}): {install}"));
    let (device, queue) =
        pollster::block_on(adapter.request_device(&Default::default())).expect("device");
    let gpu = Gpu::from_device(device, queue);
    gpu.fill_outputs_with_sentinel(true);
    gpu
}

/// A batch's columns split between two adapters (lavapipe through Vulkan, llvmpipe through GL),
/// each returning its rows' partial states; merged on the CPU they give the single-device
/// log-sum-exp within the usual bound, special rows included.
#[test]
fn shards_on_two_adapters_merge_into_the_log_sum_exp() {
    let vk = gpu_on(
        wgpu::Backends::VULKAN,
        "apt-get install -y mesa-vulkan-drivers",
    );
    let gl = gpu_on(
        wgpu::Backends::GL,
        "apt-get install -y libgl1-mesa-dri libegl1",
    );
    let mut rng = Rng(101);
    let (rows, cols, split) = (300, 1000, 377);
    let mut x = rng.vec(rows * cols, -30.0, 30.0);
    // Special rows: a NaN in the right shard, +inf in the left, a row all −inf, a row whose
    // left shard is all −inf, and a large offset.
    x[cols + 900] = f32::NAN;
    x[2 * cols + 10] = f32::INFINITY;
    x[3 * cols..4 * cols].fill(f32::NEG_INFINITY);
    x[4 * cols..4 * cols + split].fill(f32::NEG_INFINITY);
    for v in &mut x[5 * cols..6 * cols] {
        *v += 1e4;
    }
    let shard = |c0: usize, c1: usize| -> Vec<f32> {
        (0..rows)
            .flat_map(|r| x[r * cols + c0..r * cols + c1].to_vec())
            .collect()
    };
    let left = vk.logsumexp_partial(&shard(0, split), rows, split).unwrap();
    let right = gl
        .logsumexp_partial(&shard(split, cols), rows, cols - split)
        .unwrap();
    let merged: Vec<f32> = left
        .iter()
        .zip(&right)
        .map(|(a, b)| a.combine(*b).logsumexp())
        .collect();
    check_lse(&merged, &x, rows, cols, "merged shards");
    // Any number of shards, in any grouping: three shards on one adapter, merged both ways.
    let thirds = [(0, 300), (300, 650), (650, cols)];
    let parts: Vec<Vec<logdomain::LseState>> = thirds
        .iter()
        .map(|&(c0, c1)| vk.logsumexp_partial(&shard(c0, c1), rows, c1 - c0).unwrap())
        .collect();
    let a: Vec<f32> = (0..rows)
        .map(|r| {
            parts[0][r]
                .combine(parts[1][r])
                .combine(parts[2][r])
                .logsumexp()
        })
        .collect();
    let b: Vec<f32> = (0..rows)
        .map(|r| {
            logdomain::LseState::EMPTY
                .combine(parts[2][r])
                .combine(parts[0][r].combine(parts[1][r]))
                .logsumexp()
        })
        .collect();
    check_lse(&a, &x, rows, cols, "three shards");
    check_lse(&b, &x, rows, cols, "three shards, other grouping");
}

/// Runs `func` on f16 entries stored from byte `offset` of a buffer, `stride` entries apart, and
/// returns the f32 output (sentinel-filled first) and the strategy that ran (a vec4 strategy
/// runs as its scalar form on f16).
fn run_f16(
    gpu: &Gpu,
    func: RowFn,
    x: &[half::f16],
    (rows, cols, stride, offset): (usize, usize, usize, usize),
    strategy: Strategy,
) -> (Vec<f32>, Strategy) {
    let layout = RowsLayout {
        input_offset: offset as u64,
        input_stride: stride,
        input_format: logdomain::InputFormat::F16,
        ..RowsLayout::contiguous(rows, cols)
    };
    let op = RowOp::new(gpu, func, layout, strategy)
        .unwrap_or_else(|e| panic!("{func:?} {strategy:?} {rows}x{cols}: {e}"));
    // The entries after `offset / 2` placeholders, padded to whole words.
    let mut words = vec![half::f16::from_f32(7.0); offset / 2];
    words.extend_from_slice(x);
    if words.len() % 2 == 1 {
        words.push(half::f16::ZERO);
    }
    let input = gpu
        .device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&words),
            usage: wgpu::BufferUsages::STORAGE,
        });
    let out_bytes = (func.output_len(rows, cols) * 4) as u64;
    let output = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: out_bytes.max(4),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    (
        fill_and_run(gpu, &op, &input, &output, out_bytes),
        op.strategy(),
    )
}

/// Records the sentinel fill of `op`'s output and `op` itself, submits, and reads back the
/// output's first `bytes` bytes.
fn input_contiguous(gpu: &Gpu, x: &[f32]) -> wgpu::Buffer {
    gpu.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(x),
            usage: wgpu::BufferUsages::STORAGE,
        })
}

fn fill_and_run(
    gpu: &Gpu,
    op: &RowOp,
    input: &wgpu::Buffer,
    output: &wgpu::Buffer,
    bytes: u64,
) -> Vec<f32> {
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    op.record_sentinel_fill(&mut encoder, output).unwrap();
    op.record(&mut encoder, input, output).unwrap();
    gpu.queue().submit([encoder.finish()]);
    gpu.read_f32(output, bytes).unwrap()
}

#[test]
fn f16_decoding_is_exact_for_every_bit_pattern() {
    // Each of the 65,536 f16 values as a row of one: its log-sum-exp is itself.
    let gpu = gpu();
    let x: Vec<half::f16> = (0..=u16::MAX).map(half::f16::from_bits).collect();
    let got = gpu.logsumexp_f16(&x, x.len(), 1).unwrap();
    for (h, g) in x.iter().zip(&got) {
        // −0 + log1p(0) is +0.
        let want = h.to_f32() + 0.0;
        assert!(
            g.to_bits() == want.to_bits() || (want.is_nan() && g.is_nan()),
            "f16 {:#06x}: got {g:e} ({:#010x}), want {want:e}",
            h.to_bits(),
            g.to_bits()
        );
    }
}

#[test]
fn f16_inputs_give_the_f32_kernels_bits_on_every_strategy() {
    let gpu = gpu();
    let mut rng = Rng(161);
    let specials = [
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        0.0,
        -0.0,
        65504.0,
        -65504.0,
        6e-8,
        -3e-5,
    ];
    // (rows, cols, stride, byte offset): odd strides and offsets put entries in either half of a
    // word; long rows take the split strategies; rows of whole 16-byte words (8 entries) from a
    // 16-byte offset are read as vec4 words by ThreadVec4 (one specialised for its length).
    for (rows, cols, stride, offset) in [
        (3, 7, 9, 2),
        (4, 256, 256, 0),
        (9, 64, 72, 16),
        (3, 1024, 1040, 32),
        (3, 1024, 1036, 16),
        (40, 33, 33, 0),
        (5, 1001, 1003, 6),
        (2, 20_001, 20_001, 2),
        (1, 300_000, 300_000, 0),
    ] {
        let n = (rows - 1) * stride + cols;
        let mut x: Vec<half::f16> = (0..n)
            .map(|_| half::f16::from_f32(rng.uniform(-30.0, 30.0)))
            .collect();
        if rows > 2 {
            // Special values in row 1 only; the others stay finite.
            for (j, &v) in specials.iter().enumerate().take(cols) {
                x[stride + j * cols / specials.len()] = half::f16::from_f32(v);
            }
        }
        // The same values as f32, packed densely.
        let dense: Vec<f32> = (0..rows)
            .flat_map(|r| x[r * stride..r * stride + cols].iter().map(|h| h.to_f32()))
            .collect();
        for func in FUNCS {
            for strategy in strategies(gpu) {
                if lane_limit_applies(gpu, strategy, cols) {
                    continue;
                }
                if RowOp::new(gpu, func, RowsLayout::contiguous(rows, cols), strategy).is_err() {
                    continue; // a strategy this shape cannot use, f32 or f16 alike
                }
                let (got, ran) = run_f16(gpu, func, &x, (rows, cols, stride, offset), strategy);
                if strategy == Strategy::ThreadVec4 {
                    let words = cols % 8 == 0 && stride % 8 == 0 && offset % 16 == 0;
                    assert_eq!(
                        ran == Strategy::ThreadVec4,
                        words,
                        "{func:?} {rows}x{cols} stride {stride} offset {offset}: ran {ran:?}"
                    );
                }
                // The f32 kernel that ran on f16 (the f32 input may allow a vec4 one).
                let want = run_op(gpu, func, &dense, rows, cols, ran);
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{func:?} {strategy:?} {rows}x{cols} stride {stride} offset {offset}"
                );
            }
        }
    }
    // The blocking calls: bit for bit the f32 calls on the converted values (odd length).
    let x: Vec<half::f16> = (0..3 * 5)
        .map(|_| half::f16::from_f32(rng.uniform(-5.0, 5.0)))
        .collect();
    let x32: Vec<f32> = x.iter().map(|h| h.to_f32()).collect();
    assert_eq!(
        gpu.logsumexp_f16(&x, 3, 5).unwrap(),
        gpu.logsumexp(&x32, 3, 5).unwrap()
    );
    assert_eq!(
        gpu.softmax_f16(&x, 3, 5).unwrap(),
        gpu.softmax(&x32, 3, 5).unwrap()
    );
    assert_eq!(
        gpu.log_softmax_f16(&x, 3, 5).unwrap(),
        gpu.log_softmax(&x32, 3, 5).unwrap()
    );
    assert!(matches!(
        gpu.logsumexp_f16(&x[1..], 3, 5),
        Err(Error::InputLength { .. })
    ));
    // An f16 input offset must be even; an f32 one a multiple of 4.
    let odd = RowsLayout {
        input_offset: 3,
        input_format: logdomain::InputFormat::F16,
        ..RowsLayout::contiguous(2, 2)
    };
    assert!(matches!(
        RowOp::new(gpu, RowFn::Logsumexp, odd, Strategy::Auto),
        Err(Error::Buffer(_))
    ));
}

/// Runs softmax / log_softmax with an f16 output: rows `out_stride` entries apart from byte
/// `out_offset` of a buffer whose other entries hold `PAD`; the output is sentinel-filled first.
/// Returns the whole buffer as f16 bits, and the strategy that ran.
fn run_to_f16(
    gpu: &Gpu,
    func: RowFn,
    x: &[f32],
    (rows, cols, out_stride, out_offset): (usize, usize, usize, usize),
    strategy: Strategy,
) -> (Vec<u16>, Strategy) {
    let layout = RowsLayout {
        output_offset: out_offset as u64,
        output_stride: out_stride,
        output_format: logdomain::OutputFormat::F16,
        ..RowsLayout::contiguous(rows, cols)
    };
    let op = RowOp::new(gpu, func, layout, strategy)
        .unwrap_or_else(|e| panic!("{func:?} {strategy:?} {rows}x{cols}: {e}"));
    let input = gpu
        .device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(x),
            usage: wgpu::BufferUsages::STORAGE,
        });
    let halves = (out_offset / 2 + (rows - 1) * out_stride + cols + 1).next_multiple_of(2);
    let output = gpu
        .device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&vec![PAD; halves]),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        });
    let halves = fill_and_run(gpu, &op, &input, &output, halves as u64 * 2)
        .iter()
        .flat_map(|w| [w.to_bits() as u16, (w.to_bits() >> 16) as u16])
        .collect();
    (halves, op.strategy())
}

/// What the f16 output's padding holds before the op runs (1.0 in f16).
const PAD: u16 = 0x3c00;

#[test]
fn f16_outputs_are_the_f32_results_rounded_on_every_strategy() {
    let gpu = gpu();
    let mut rng = Rng(163);
    let specials = [INF, NEG_INF, NAN, 0.0, -0.0, 1e30, -1e30, 88.0];
    // (rows, cols, output stride, output byte offset): odd columns leave a padding half at the
    // end of each row's last word; long rows take the split strategies (even segments).
    for (rows, cols, out_stride, out_offset) in [
        (3, 7, 8, 4),
        (40, 33, 34, 0),
        (5, 1001, 1004, 8),
        (2, 20_001, 20_002, 4),
        (1, 300_001, 300_001, 0),
        (4, 256, 256, 0),
    ] {
        let mut x = rng.vec(rows * cols, -30.0, 30.0);
        if rows > 2 {
            for (j, &v) in specials.iter().enumerate().take(cols) {
                x[cols + j * cols / specials.len()] = v;
            }
        }
        for func in [RowFn::Softmax, RowFn::LogSoftmax] {
            for strategy in strategies(gpu) {
                if lane_limit_applies(gpu, strategy, cols) {
                    continue;
                }
                if RowOp::new(gpu, func, RowsLayout::contiguous(rows, cols), strategy).is_err() {
                    continue;
                }
                let (got, ran) = run_to_f16(
                    gpu,
                    func,
                    &x,
                    (rows, cols, out_stride, out_offset),
                    strategy,
                );
                // The f32 kernel that ran (an f32 output may allow a vec4 one).
                let want = run_op(gpu, func, &x, rows, cols, ran);
                let first = out_offset / 2;
                for (i, &h) in got.iter().enumerate() {
                    let at = i
                        .checked_sub(first)
                        .map(|e| (e / out_stride, e % out_stride));
                    let expected = match at {
                        Some((r, c)) if r < rows && c < cols => {
                            half::f16::from_f32(want[r * cols + c]).to_bits()
                        }
                        _ => PAD,
                    };
                    let nan_ok = half::f16::from_bits(h).is_nan()
                        && half::f16::from_bits(expected).is_nan()
                        && h != logdomain::SENTINEL_F16_BITS;
                    assert!(
                        h == expected || nan_ok,
                        "{func:?} {strategy:?} {rows}x{cols} stride {out_stride} offset \
                         {out_offset}: half {i} ({at:?}) is {h:#06x}, want {expected:#06x}"
                    );
                }
            }
        }
    }
}

#[test]
fn f16_output_rounding_and_errors() {
    let gpu = gpu();
    // log_softmax of [0, v] is v for v far below 0 (e^v under half an ulp of v): the f16
    // output is v rounded, so ties, overflow, subnormals and the largest finite value show.
    let vs = [
        -2049.0f32,
        -2051.0,
        -2050.0,
        -65504.0,
        -65519.0,
        -65520.0,
        -70000.0,
        -1e30,
        -24.0,
        -24.000_002,
        -4097.0,
        -4099.0,
    ];
    let x: Vec<f32> = vs.iter().flat_map(|&v| [0.0, v]).collect();
    let got = gpu.log_softmax_to_f16(&x, vs.len(), 2).unwrap();
    let want32 = gpu.log_softmax(&x, vs.len(), 2).unwrap();
    for (r, &v) in vs.iter().enumerate() {
        assert_eq!(want32[2 * r + 1], v, "log_softmax of [0, {v}] in f32");
        assert_eq!(
            got[2 * r + 1].to_bits(),
            half::f16::from_f32(v).to_bits(),
            "{v} to f16"
        );
    }
    // softmax of [0, v]: e^v / (1 + e^v) down through the f16 subnormals to zero.
    let vs: Vec<f32> = (0..60).map(|i| -(i as f32) * 0.37).collect();
    let x: Vec<f32> = vs.iter().flat_map(|&v| [0.0, v]).collect();
    let got = gpu.softmax_to_f16(&x, vs.len(), 2).unwrap();
    let want32 = gpu.softmax(&x, vs.len(), 2).unwrap();
    assert!(
        got.iter()
            .any(|h| h.to_bits() & 0x7c00 == 0 && h.to_bits() & 0x3ff != 0),
        "some subnormal outputs"
    );
    for (g, w) in got.iter().zip(&want32) {
        assert_eq!(g.to_bits(), half::f16::from_f32(*w).to_bits(), "{w:e}");
    }
    // An odd number of entries: the blocking call returns exactly rows × cols.
    assert_eq!(gpu.softmax_to_f16(&[1.0, 2.0, 3.0], 1, 3).unwrap().len(), 3);
    // Refused: f16 for the reductions, rows that would not start on a word.
    for func in [RowFn::Logsumexp, RowFn::LogsumexpParts] {
        let l = RowsLayout {
            output_format: logdomain::OutputFormat::F16,
            ..RowsLayout::contiguous(4, 4)
        };
        assert!(matches!(
            RowOp::new(gpu, func, l, Strategy::Auto),
            Err(Error::Unsupported(_))
        ));
    }
    let l = RowsLayout {
        output_format: logdomain::OutputFormat::F16,
        output_stride: 5,
        ..RowsLayout::contiguous(4, 5)
    };
    assert!(matches!(
        RowOp::new(gpu, RowFn::Softmax, l, Strategy::Auto),
        Err(Error::Buffer(_))
    ));
}

/// The vec4 strategies on rows of every length class: one word, several rows a subgroup, a row
/// kept in registers, rows walked in several tiles (read again by softmax and log_softmax), with
/// special values in every position of a word; each runs as a vec4 kernel (not its scalar
/// form), meets the accuracy contract, and gives the same bits on a strided, offset layout.
#[test]
fn vec4_strategies_on_every_row_length() {
    let gpu = gpu();
    let mut rng = Rng(21);
    let vec4: Vec<Strategy> = gpu
        .strategies()
        .into_iter()
        .filter(|s| {
            matches!(
                s,
                Strategy::SubgroupVec4 | Strategy::WorkgroupVec4 | Strategy::ThreadVec4
            )
        })
        .collect();
    assert!(vec4.contains(&Strategy::WorkgroupVec4));
    assert!(vec4.contains(&Strategy::ThreadVec4));
    let specials = [NEG_INF, INF, NAN, 3e38, -3e38, 1e-40, -0.0, 88.0];
    for (rows, cols) in [
        (9, 4),
        (33, 16),
        (17, 60),
        (40, 256),
        (5, 1028),
        (3, 4096),
        (3, 16_384),
        (2, 20_000),
    ] {
        let mut x = rng.vec(rows * cols, -40.0, 40.0);
        // Row 1 (and 2): specials in each of the four positions of a word.
        if rows > 2 {
            for (j, &v) in specials.iter().enumerate() {
                x[cols + (j * (cols / 8).max(1) + j % 4) % cols] = v;
            }
            for v in &mut x[2 * cols..3 * cols] {
                *v = NEG_INF;
            }
        }
        let t = truths(&x, rows, cols);
        for &s in &vec4 {
            for func in FUNCS {
                let what = format!("{rows}x{cols} {s:?} {func:?}");
                let op = RowOp::new(gpu, func, RowsLayout::contiguous(rows, cols), s).unwrap();
                assert_eq!(op.strategy(), s, "{what}: ran as its scalar form");
                let got = run_op(gpu, func, &x, rows, cols, s);
                check_with(func, &got, &x, rows, cols, &t, &what);
                // Rows 12 entries apart more, from byte 32 of the buffer: the same bits.
                let stride = cols + 12;
                let mut spaced = vec![5.0f32; 8 + rows * stride];
                for r in 0..rows {
                    spaced[8 + r * stride..8 + r * stride + cols]
                        .copy_from_slice(&x[r * cols..(r + 1) * cols]);
                }
                let layout = RowsLayout {
                    input_offset: 32,
                    input_stride: stride,
                    ..RowsLayout::contiguous(rows, cols)
                };
                let op = RowOp::new(gpu, func, layout, s).unwrap();
                assert_eq!(op.strategy(), s, "{what}: strided ran as its scalar form");
                let input = gpu
                    .device()
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: None,
                        contents: bytemuck::cast_slice(&spaced),
                        usage: wgpu::BufferUsages::STORAGE,
                    });
                let bytes = (func.output_len(rows, cols) * 4) as u64;
                let output = gpu.device().create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size: bytes,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                let strided = fill_and_run(gpu, &op, &input, &output, bytes);
                assert_eq!(
                    strided.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{what}: strided layout"
                );
                // softmax / log_softmax rows written from byte 4 of the output, 5 entries apart
                // more: no 16-byte stores there (logsumexp_out.wgsl), the same bits, and the
                // entries between the rows left as they were.
                if matches!(func, RowFn::Softmax | RowFn::LogSoftmax) {
                    let out_stride = cols + 5;
                    let layout = RowsLayout {
                        output_offset: 4,
                        output_stride: out_stride,
                        ..RowsLayout::contiguous(rows, cols)
                    };
                    let op = RowOp::new(gpu, func, layout, s).unwrap();
                    assert_eq!(op.strategy(), s, "{what}: ran as its scalar form");
                    let words = 1 + rows * out_stride;
                    let output =
                        gpu.device()
                            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                                label: None,
                                contents: bytemuck::cast_slice(&vec![7.0f32; words]),
                                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                            });
                    let all = fill_and_run(
                        gpu,
                        &op,
                        &input_contiguous(gpu, &x),
                        &output,
                        words as u64 * 4,
                    );
                    for r in 0..rows {
                        for j in 0..out_stride {
                            let v = all[1 + r * out_stride + j];
                            if j < cols {
                                assert_eq!(
                                    v.to_bits(),
                                    got[r * cols + j].to_bits(),
                                    "{what}: unaligned output, row {r} entry {j}"
                                );
                            } else {
                                assert_eq!(v, 7.0, "{what}: unaligned output, row {r} gap {j}");
                            }
                        }
                    }
                    assert_eq!(all[0], 7.0, "{what}: word 0 of the unaligned output");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// N-d arrays: any axes, strides and offsets (`AxisOp`, `Gpu::reduce_axes`).

use logdomain::{Axes, AxisKernel, AxisOp, AxisOptions, NdLayout};

/// Row-major multi-indices of `shape`.
fn nd_indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let total: usize = shape.iter().product();
    (0..total)
        .map(|mut v| {
            let mut idx = vec![0; shape.len()];
            for d in (0..shape.len()).rev() {
                idx[d] = v % shape[d];
                v /= shape[d];
            }
            idx
        })
        .collect()
}

/// The array's results rearranged as rows for the f64 checks: the entries of each result, in
/// row-major order of the reduced indices, as a `positions × extent` matrix, and for softmax
/// and log_softmax the output (row-major over the whole shape) in the same order.
fn nd_rows(
    x: &[f32],
    layout: &NdLayout,
    mask: &[bool],
    out: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>, usize, usize) {
    let shape = &layout.shape;
    let kept: Vec<usize> = (0..shape.len()).filter(|&d| !mask[d]).collect();
    let red: Vec<usize> = (0..shape.len()).filter(|&d| mask[d]).collect();
    let ks: Vec<usize> = kept.iter().map(|&d| shape[d]).collect();
    let rs: Vec<usize> = red.iter().map(|&d| shape[d]).collect();
    let dense = logdomain::logsumexp::contiguous_strides(shape);
    let eb = layout.format.bytes() as usize;
    let (mut rows, mut got) = (Vec::new(), Vec::new());
    let (kis, ris) = (nd_indices(&ks), nd_indices(&rs));
    for ki in &kis {
        for ri in &ris {
            let mut full = vec![0; shape.len()];
            for (&d, &i) in kept.iter().zip(ki) {
                full[d] = i;
            }
            for (&d, &i) in red.iter().zip(ri) {
                full[d] = i;
            }
            let at: usize = full.iter().zip(&layout.strides).map(|(i, s)| i * s).sum();
            rows.push(x[layout.offset as usize / eb + at]);
            if let Some(o) = out {
                got.push(o[full.iter().zip(&dense).map(|(i, s)| i * s).sum::<usize>()]);
            }
        }
    }
    (rows, got, kis.len(), ris.len())
}

/// A layout of `shape` inside a larger buffer: the dimensions stored in the order `order`
/// (outermost first), each padded by `pad` entries, from entry `offset`.
fn nd_strided(shape: &[usize], order: &[usize], pad: usize, offset: usize) -> (NdLayout, usize) {
    let mut strides = vec![0; shape.len()];
    let mut s = 1;
    for &d in order.iter().rev() {
        strides[d] = s;
        s *= shape[d] + pad;
    }
    let layout = NdLayout {
        strides,
        offset: 4 * offset as u64,
        ..NdLayout::contiguous(shape)
    };
    (layout, offset + s)
}

/// Runs `func` over `axes` with the given kernel and segment length (0: the op's choice) through
/// the encoder API, the output filled with the sentinel first; returns the op and the values.
fn run_axes(
    gpu: &Gpu,
    func: RowFn,
    x: &[f32],
    layout: &NdLayout,
    axes: &Axes,
    kernel: AxisKernel,
    segment_len: usize,
) -> Result<(AxisOp, Vec<f32>), logdomain::Error> {
    let options = AxisOptions {
        kernel,
        segment_len,
        ..AxisOptions::default()
    };
    let op = AxisOp::with_options(gpu, func, layout, axes.clone(), &options)?;
    let n: usize = op.output_shape(false).iter().product();
    let values = record_nd(gpu, &op, x, None, n);
    Ok((op, values))
}

/// Records `op` on `x` (and its second input: a packed mask, `b`, or `g`) into fresh buffers,
/// the output filled with the sentinel first; returns `words` output values.
fn record_nd(gpu: &Gpu, op: &AxisOp, x: &[f32], second: Option<&[u8]>, words: usize) -> Vec<f32> {
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let buf = |bytes: &[u8]| {
        gpu.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytes,
                usage,
            })
    };
    let mut bytes = bytemuck::cast_slice::<f32, u8>(x).to_vec();
    bytes.resize(
        (op.input_bytes_needed() as usize).max(bytes.len()).max(4),
        0,
    );
    let input = buf(&bytes);
    let output = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: op.output_bytes_needed().max(4 * words as u64).max(4),
        usage,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    op.record_sentinel_fill(&mut encoder, &output).unwrap();
    match second {
        Some(bytes) => {
            let second = buf(bytes);
            op.record_masked(&mut encoder, &input, &second, &output)
                .unwrap();
        }
        None => op.record(&mut encoder, &input, &output).unwrap(),
    }
    gpu.queue().submit([encoder.finish()]);
    gpu.read_f32(&output, 4 * words as u64).unwrap()
}

/// `got` against the CPU mirror's `want`, bit for bit (a NaN for a NaN, never the sentinel).
fn assert_mirror(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits()
                || (g.is_nan() && w.is_nan() && g.to_bits() != SENTINEL_BITS),
            "{what}: entry {i}: {g} against the mirror's {w}"
        );
    }
}

/// 1-D to 5-D arrays, every kind of axis choice, permuted and padded strides, offsets: each
/// kernel against the f64 truth within the contract's bound and, for the strided kernels,
/// against the CPU mirror bit for bit.
#[test]
fn nd_axes_meet_the_contract_and_mirror_the_reference() {
    let gpu = gpu();
    let mut rng = Rng(20);
    let cases: Vec<(Vec<usize>, Vec<usize>, Axes)> = vec![
        (vec![37], vec![0], Axes::All),
        (vec![37], vec![0], Axes::from(vec![])),
        (vec![9, 40], vec![0, 1], Axes::from(0)),
        (vec![9, 40], vec![1, 0], Axes::from(-1)),
        (vec![9, 40], vec![1, 0], Axes::from(0)),
        (vec![3, 5, 8], vec![0, 1, 2], Axes::from([0, 2])),
        (vec![3, 5, 8], vec![2, 0, 1], Axes::from(1)),
        (vec![3, 5, 8], vec![0, 1, 2], Axes::from([-2, -3])),
        (vec![2, 3, 4, 8], vec![0, 1, 2, 3], Axes::from([1, 3])),
        (vec![2, 3, 4, 8], vec![3, 2, 1, 0], Axes::from([0, 2])),
        (
            vec![2, 3, 1, 4, 8],
            vec![0, 1, 2, 3, 4],
            Axes::from([0, 2, 3]),
        ),
        (vec![2, 3, 1, 4, 8], vec![4, 0, 2, 1, 3], Axes::All),
        (vec![4, 1, 3, 2, 4], vec![0, 1, 2, 3, 4], Axes::from([1, 4])),
    ];
    for (shape, order, axes) in &cases {
        for (pad, offset) in [(0, 0), (1, 3), (0, 4)] {
            let (layout, len) = nd_strided(shape, order, pad, offset);
            let x = rng.vec(len, -30.0, 30.0);
            let mask = axes.mask(shape.len()).unwrap();
            for func in [RowFn::Logsumexp, RowFn::Softmax, RowFn::LogSoftmax] {
                for (kernel, seg) in [
                    (AxisKernel::Auto, 0),
                    (AxisKernel::Strided, 0),
                    (AxisKernel::StridedVec4, 0),
                    (AxisKernel::Strided, 7),
                    (AxisKernel::StridedVec4, 7),
                ] {
                    let what = format!(
                        "{func:?} {shape:?} order {order:?} pad {pad} offset {offset} {axes:?} \
                         {kernel:?} segments of {seg}"
                    );
                    let (op, got) = run_axes(gpu, func, &x, &layout, axes, kernel, seg)
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    let (rows, arranged, p, r) =
                        nd_rows(&x, &layout, &mask, (!func.reduces()).then_some(&got[..]));
                    let what = format!("{what} -> {:?}", op.kernel());
                    let cmp = if func.reduces() { &got } else { &arranged };
                    check(func, cmp, &rows, p, r, &what);
                    if op.kernel() != AxisKernel::Rows {
                        let want = logdomain::reference::logsumexp::reduce_axes(
                            func,
                            &x[offset..],
                            shape,
                            &layout.strides,
                            &mask,
                            op.segment_len(),
                        );
                        assert_mirror(&got, &want, &what);
                    }
                }
            }
        }
    }
}

/// Reducing axis 0 of an (S, N) array where it lies gives, bit for bit, what the row kernel
/// (one invocation a row, the same combine order) gives on the transposed copy; the vec4 form
/// gives the same bits; a split into segments gives `SplitRowThreads`-style bits, checked against
/// the mirror in `nd_axes_meet_the_contract_and_mirror_the_reference`.
#[test]
fn axis_zero_matches_the_row_kernel_on_the_transpose_bit_for_bit() {
    let gpu = gpu();
    let mut rng = Rng(21);
    for (s, n) in [(1000, 64), (64, 12), (3, 40), (130, 4)] {
        let x = rng.vec(s * n, -20.0, 20.0);
        let mut t = vec![0.0; s * n];
        for i in 0..s {
            for j in 0..n {
                t[j * s + i] = x[i * n + j];
            }
        }
        let layout = NdLayout::contiguous(&[s, n]);
        for func in [RowFn::Logsumexp, RowFn::Softmax, RowFn::LogSoftmax] {
            let rows = run_op(gpu, func, &t, n, s, Strategy::ThreadPerRow);
            for kernel in [AxisKernel::Strided, AxisKernel::StridedVec4] {
                let (op, got) =
                    run_axes(gpu, func, &x, &layout, &Axes::from(0), kernel, s).unwrap();
                let what = format!("{func:?} ({s}, {n}) {:?}", op.kernel());
                if func.reduces() {
                    assert_eq!(
                        bytemuck::cast_slice::<f32, u32>(&got),
                        bytemuck::cast_slice::<f32, u32>(&rows),
                        "{what}"
                    );
                } else {
                    for i in 0..s {
                        for j in 0..n {
                            assert_eq!(
                                got[i * n + j].to_bits(),
                                rows[j * s + i].to_bits(),
                                "{what}: ({i}, {j})"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// SciPy's axis semantics: `axis=None`, negative and tuple axes, `keepdims`, an empty reduced
/// extent (logsumexp −inf; softmax of an empty array is empty), no axes at all (each entry on its
/// own), special values down a column, and the errors.
#[test]
fn nd_semantics_follow_scipy() {
    let gpu = gpu();
    let x: Vec<f32> = (0..24).map(|i| i as f32 * 0.25).collect();
    let all = gpu
        .reduce_axes(RowFn::Logsumexp, &x, &[2, 3, 4], Axes::All, false)
        .unwrap();
    assert_eq!(all.shape, Vec::<usize>::new());
    let flat = gpu.logsumexp(&x, 1, 24).unwrap();
    assert_eq!(all.values, flat);
    let kept = gpu
        .reduce_axes(RowFn::Logsumexp, &x, &[2, 3, 4], [0, -1], true)
        .unwrap();
    assert_eq!(kept.shape, [1, 3, 1]);
    let plain = gpu
        .reduce_axes(RowFn::Logsumexp, &x, &[2, 3, 4], [2, 0], false)
        .unwrap();
    assert_eq!(
        (plain.shape.clone(), plain.values.clone()),
        (vec![3], kept.values)
    );
    // Empty extents.
    let e = gpu
        .reduce_axes(RowFn::Logsumexp, &[], &[3, 0], 1, false)
        .unwrap();
    assert_eq!((e.shape, e.values), (vec![3], vec![NEG_INF; 3]));
    let e = gpu
        .reduce_axes(RowFn::Logsumexp, &[], &[0, 3], 1, true)
        .unwrap();
    assert_eq!((e.shape, e.values), (vec![0, 1], vec![]));
    let e = gpu
        .reduce_axes(RowFn::Softmax, &[], &[3, 0], 1, false)
        .unwrap();
    assert_eq!((e.shape, e.values), (vec![3, 0], vec![]));
    // No axes: each entry its own log-sum-exp; softmax 1 (NaN for ±inf and NaN entries).
    let v = [1.5f32, NEG_INF, INF, NAN];
    let none = gpu
        .reduce_axes(RowFn::Logsumexp, &v, &[4], Axes::from(vec![]), false)
        .unwrap();
    assert_row(&none.values, &v, "axis=()");
    let sm = gpu
        .reduce_axes(RowFn::Softmax, &v, &[4], Axes::from(vec![]), false)
        .unwrap();
    assert_row(&sm.values, &[1.0, NAN, NAN, NAN], "softmax axis=()");
    // Special values down columns: the semantics table's rows as columns of one array.
    let cols = [
        [NEG_INF, NEG_INF, NEG_INF],
        [0.0, NEG_INF, NEG_INF],
        [NAN, 1.0, NEG_INF],
        [INF, 1.0, NEG_INF],
        [INF, INF, 2.0],
        [1000.0, 1000.0, NEG_INF],
    ];
    let mut a = vec![0.0; 18];
    for (j, c) in cols.iter().enumerate() {
        for (i, &v) in c.iter().enumerate() {
            a[i * 6 + j] = v;
        }
    }
    for func in [RowFn::Logsumexp, RowFn::Softmax, RowFn::LogSoftmax] {
        let got = gpu.reduce_axes(func, &a, &[3, 6], 0, false).unwrap();
        for (j, c) in cols.iter().enumerate() {
            let want = run_op(gpu, func, c, 1, 3, Strategy::ThreadPerRow);
            let col: Vec<f32> = if func.reduces() {
                vec![got.values[j]]
            } else {
                (0..3).map(|i| got.values[i * 6 + j]).collect()
            };
            assert_row(&col, &want, &format!("{func:?} column {j}"));
        }
    }
    // Errors: out of range, duplicates, too many dimensions, a short input, a bad output.
    let err = |r: Result<logdomain::NdArray, Error>| r.unwrap_err();
    assert!(matches!(
        err(gpu.reduce_axes(RowFn::Logsumexp, &x, &[2, 3, 4], 3, false)),
        Error::Axis(_)
    ));
    assert!(matches!(
        err(gpu.reduce_axes(RowFn::Logsumexp, &x, &[2, 3, 4], [1, -2], false)),
        Error::Axis(_)
    ));
    assert!(matches!(
        err(gpu.reduce_axes(RowFn::Logsumexp, &x, &[1; 9], 0, false)),
        Error::Shape(_)
    ));
    assert!(matches!(
        err(gpu.reduce_axes(RowFn::Logsumexp, &x, &[5, 5], 0, false)),
        Error::InputLength { .. }
    ));
    let layout = NdLayout::contiguous(&[2, 3]);
    let bad = AxisOptions {
        output_strides: Some(vec![1]),
        ..AxisOptions::default()
    };
    assert!(matches!(
        AxisOp::with_options(gpu, RowFn::Logsumexp, &layout, 0, &bad),
        Err(Error::Shape(_))
    ));
    let rows_only = AxisOptions {
        kernel: AxisKernel::Rows,
        ..AxisOptions::default()
    };
    assert!(matches!(
        AxisOp::with_options(gpu, RowFn::Logsumexp, &layout, 0, &rows_only),
        Err(Error::Unsupported(_))
    ));
    let parts_backward = AxisOptions {
        backward: true,
        ..AxisOptions::default()
    };
    assert!(matches!(
        AxisOp::with_options(gpu, RowFn::LogsumexpParts, &layout, 0, &parts_backward),
        Err(Error::Unsupported(_))
    ));
}

/// Results longer than one invocation may walk are split into segments (axis 0 of
/// (40,000, 8)); on a device with 64 KiB bindings and 16 workgroups a grid dimension, windows
/// and 2-D grids; a strided output at an offset, with the sentinel left between its entries;
/// f16 inputs give the f32 bits.
/// `got` from `op` has the CPU mirror's bits (`reference::logsumexp::reduce_axes` with the op's
/// segment length).
fn assert_mirrors(
    func: RowFn,
    op: &AxisOp,
    got: &[f32],
    x: &[f32],
    layout: &NdLayout,
    mask: &[bool],
    what: &str,
) {
    let want = logdomain::reference::logsumexp::reduce_axes(
        func,
        x,
        &layout.shape,
        &layout.strides,
        mask,
        op.segment_len(),
    );
    assert_eq!(
        bytemuck::cast_slice::<f32, u32>(got),
        bytemuck::cast_slice::<f32, u32>(&want),
        "{what}: {func:?} {:?}, segments of {}",
        op.kernel(),
        op.segment_len()
    );
}

/// The vec4 kernels' CPU form (eight quads 32 positions apart an invocation, groups of 64
/// quads): full and partial groups, kept dimensions folded apart, one walk or segments, every
/// function, each the CPU mirror's bits (on GPUs the quad form, the same bits). Along 1000
/// entries, segments of 1 to 15 blocks of 64 (the counter levels of the CPU form: 2, 8, 11 and
/// 15 blocks, a last segment of a single one) and longer ones (961, 1000: the quad form).
#[test]
fn nd_vec4_groups_of_quads_mirror_the_reference() {
    let gpu = gpu();
    let mut rng = Rng(23);
    for (shape, segs) in [
        (vec![130, 292], vec![0, 50]),
        (vec![70, 1028], vec![0, 50]),
        (vec![3, 256], vec![0, 50]),
        (vec![41, 36], vec![0, 50]),
        (vec![9, 3, 260], vec![0, 50]),
        (vec![1000, 68], vec![0, 100, 453, 700, 960, 961, 1000]),
    ] {
        let layout = NdLayout::contiguous(&shape);
        let x = rng.vec(shape.iter().product(), -30.0, 30.0);
        let mask: Vec<bool> = (0..shape.len()).map(|d| d == 0).collect();
        for func in [RowFn::Logsumexp, RowFn::Softmax, RowFn::LogSoftmax] {
            for &seg in &segs {
                let (op, got) = run_axes(
                    gpu,
                    func,
                    &x,
                    &layout,
                    &Axes::from(0),
                    AxisKernel::Auto,
                    seg,
                )
                .unwrap();
                assert_eq!(op.kernel(), AxisKernel::StridedVec4, "{shape:?}");
                let what = format!("{func:?} {shape:?} segments of {seg}");
                assert_mirrors(func, &op, &got, &x, &layout, &mask, &what);
            }
        }
    }
}

#[test]
fn nd_splits_windows_strided_outputs_and_f16() {
    let mut rng = Rng(22);
    let big = rng.vec(40_000 * 8, -10.0, 10.0);
    let layout = NdLayout::contiguous(&[40_000, 8]);
    let mask = [true, false];
    let small = small_gpu();
    for gpu in [gpu(), &small] {
        for func in [RowFn::Logsumexp, RowFn::LogSoftmax] {
            let (op, got) = run_axes(
                gpu,
                func,
                &big,
                &layout,
                &Axes::from(0),
                AxisKernel::Auto,
                0,
            )
            .unwrap();
            assert!(op.segment_len() < 40_000, "{func:?}: split");
            let (rows, arranged, p, r) =
                nd_rows(&big, &layout, &mask, (!func.reduces()).then_some(&got[..]));
            check(
                func,
                if func.reduces() { &got } else { &arranged },
                &rows,
                p,
                r,
                "split",
            );
            assert_mirrors(func, &op, &got, &big, &layout, &mask, "split");
        }
    }
    // Windows on the small device: (300, 70) is 84,000 bytes; axes 0 and 1, permuted.
    let (layout, len) = nd_strided(&[300, 70], &[1, 0], 1, 5);
    let x = rng.vec(len, -5.0, 5.0);
    for axis in [0isize, 1] {
        for func in [RowFn::Logsumexp, RowFn::Softmax] {
            let (op, got) = run_axes(
                &small,
                func,
                &x,
                &layout,
                &Axes::from(axis),
                AxisKernel::Strided,
                0,
            )
            .unwrap();
            let mask = Axes::from(axis).mask(2).unwrap();
            let want = logdomain::reference::logsumexp::reduce_axes(
                func,
                &x[5..],
                &layout.shape,
                &layout.strides,
                &mask,
                op.segment_len(),
            );
            assert_eq!(
                bytemuck::cast_slice::<f32, u32>(&got),
                bytemuck::cast_slice::<f32, u32>(&want),
                "small device, axis {axis} {func:?}"
            );
        }
    }
    // A strided output: softmax over axis 1 of (3, 4) written transposed at 8 bytes in.
    let gpu = gpu();
    let x = rng.vec(12, -3.0, 3.0);
    let layout = NdLayout::contiguous(&[3, 4]);
    let options = AxisOptions {
        output_strides: Some(vec![1, 3]),
        output_offset: 8,
        ..AxisOptions::default()
    };
    let op = AxisOp::with_options(gpu, RowFn::Softmax, &layout, 1, &options).unwrap();
    assert_eq!(op.output_bytes_needed(), 8 + 48);
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let input = gpu
        .device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&x),
            usage,
        });
    let output = gpu
        .device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&[7.0f32; 15]),
            usage,
        });
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    op.record_sentinel_fill(&mut encoder, &output).unwrap();
    let mut filled = gpu.device().create_command_encoder(&Default::default());
    op.record_sentinel_fill(&mut filled, &output).unwrap();
    gpu.queue().submit([filled.finish()]);
    let sentinels = gpu.read_f32(&output, 60).unwrap();
    assert_eq!(&sentinels[..2], &[7.0, 7.0]);
    assert!(
        sentinels[2..14]
            .iter()
            .all(|v| v.to_bits() == SENTINEL_BITS)
    );
    op.record(&mut encoder, &input, &output).unwrap();
    gpu.queue().submit([encoder.finish()]);
    let out = gpu.read_f32(&output, 60).unwrap();
    let rows = gpu.softmax(&x, 3, 4).unwrap();
    for i in 0..3 {
        for j in 0..4 {
            assert_eq!(
                out[2 + j * 3 + i].to_bits(),
                rows[i * 4 + j].to_bits(),
                "({i}, {j})"
            );
        }
    }
    assert_eq!(out[14], 7.0);
    // f16: the bits of the f32 kernels on the same values, strided and on every kernel.
    let h: Vec<half::f16> = rng
        .vec(6 * 10, -8.0, 8.0)
        .into_iter()
        .map(half::f16::from_f32)
        .collect();
    let hx: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
    let layout = NdLayout {
        shape: vec![6, 5],
        strides: vec![10, 2],
        ..NdLayout::contiguous(&[6, 5])
    };
    for axes in [Axes::from(0), Axes::from(1), Axes::All] {
        for func in [RowFn::Logsumexp, RowFn::LogSoftmax] {
            let got = gpu
                .reduce_strided_f16(func, &h, &layout, axes.clone(), false)
                .unwrap();
            let want = gpu
                .reduce_strided(func, &hx, &layout, axes.clone(), false)
                .unwrap();
            assert_eq!(got, want, "f16 {func:?} {axes:?}");
        }
    }
}

/// `where=` masks on N-d arrays, broadcast as NumPy broadcasts, on the strided kernels (with and
/// without segments): the CPU mirror bit for bit, the masked family's 2-D results within the
/// contract, the masked family's special cases, and the errors.
#[test]
fn nd_masks_broadcast_and_mirror_the_reference() {
    let gpu = gpu();
    let mut rng = Rng(23);
    let shape = [3usize, 5, 8];
    let x: Vec<f32> = rng
        .vec(120, -20.0, 20.0)
        .into_iter()
        .enumerate()
        .map(|(i, v)| match i % 17 {
            3 => f32::NAN,
            9 => INF,
            _ => v,
        })
        .collect();
    let layout = NdLayout::contiguous(&shape);
    let dense = logdomain::logsumexp::contiguous_strides(&shape);
    for where_shape in [
        vec![8],
        vec![5, 1],
        vec![3, 5, 8],
        vec![1, 8],
        vec![3, 1, 1],
    ] {
        let wn: usize = where_shape.iter().product();
        let where_: Vec<bool> = (0..wn).map(|i| (i * 7 + 3) % 5 != 0).collect();
        // The mask expanded to every entry of x, for the mirror.
        let ws = where_strides_of(&shape, &where_shape);
        let present: Vec<bool> = nd_indices(&shape)
            .iter()
            .map(|idx| where_[idx.iter().zip(&ws).map(|(i, s)| i * s).sum::<usize>()])
            .collect();
        for axes in [Axes::from(-1), Axes::from(0), Axes::from([0, 2]), Axes::All] {
            let reduced = axes.mask(3).unwrap();
            for func in [RowFn::Logsumexp, RowFn::Softmax, RowFn::LogSoftmax] {
                for (kernel, seg) in [
                    (AxisKernel::Auto, 0),
                    (AxisKernel::Strided, 0),
                    (AxisKernel::Strided, 3),
                    (AxisKernel::StridedVec4, 0),
                    (AxisKernel::StridedVec4, 3),
                ] {
                    let options = AxisOptions {
                        kernel,
                        segment_len: seg,
                        where_shape: Some(where_shape.clone()),
                        ..AxisOptions::default()
                    };
                    let what = format!("{func:?} mask {where_shape:?} {axes:?} {kernel:?} {seg}");
                    let op = AxisOp::with_options(gpu, func, &layout, axes.clone(), &options)
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    let n: usize = op.output_shape(false).iter().product();
                    let packed = logdomain::masked::pack_mask(&where_);
                    let got = record_nd(gpu, &op, &x, Some(bytemuck::cast_slice(&packed)), n);
                    let want = logdomain::reference::logsumexp::reduce_axes_masked(
                        func,
                        &x,
                        &shape,
                        &dense,
                        &present,
                        &reduced,
                        op.segment_len(),
                    );
                    assert_mirror(&got, &want, &format!("{what} ({:?})", op.kernel()));
                }
            }
        }
    }
    // The masked family's rows, through the N-d call: the same values within the contract.
    let (rows, cols) = (15, 8);
    let where_: Vec<bool> = (0..rows * cols).map(|i| i % 3 != 1).collect();
    let got = gpu
        .reduce_axes_masked(
            RowFn::LogSoftmax,
            &x,
            &[rows, cols],
            &where_,
            &[rows, cols],
            -1,
            false,
        )
        .unwrap();
    let want = gpu.log_softmax_masked(&x, &where_, rows, cols).unwrap();
    for (g, w) in got.values.iter().zip(&want) {
        assert!(
            same(*g, *w) || (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{g} {w}"
        );
    }
    // A fully masked result: −inf, all 0, all −inf; masked NaN and inf are absent.
    let v = [NAN, INF, 1.0, 2.0];
    let off = [false, false];
    for (func, want) in [
        (
            RowFn::Logsumexp,
            vec![NEG_INF, 2.0 + (1.0f32 + (-1.0f32).exp()).ln()],
        ),
        (
            RowFn::Softmax,
            vec![
                0.0,
                0.0,
                1.0 / (1.0 + 1f32.exp()),
                1.0 / (1.0 + (-1f32).exp()),
            ],
        ),
    ] {
        let w = [off[0], off[1], true, true];
        let got = gpu
            .reduce_axes_masked(func, &v, &[2, 2], &w, &[2, 2], 1, false)
            .unwrap();
        for (g, e) in got.values.iter().zip(&want) {
            assert!(
                (g - e).abs() <= 1e-6 || g == e,
                "{func:?}: {:?} against {want:?}",
                got.values
            );
        }
    }
    let lsm = gpu
        .reduce_axes_masked(
            RowFn::LogSoftmax,
            &v,
            &[2, 2],
            &[false, false, true, true],
            &[2, 2],
            1,
            false,
        )
        .unwrap();
    assert_eq!(&lsm.values[..2], &[NEG_INF, NEG_INF]);
    // Errors.
    assert!(matches!(
        gpu.reduce_axes_masked(RowFn::Logsumexp, &x, &shape, &[true; 3], &[3], -1, false),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        gpu.reduce_axes_masked(RowFn::Logsumexp, &x, &shape, &[true; 7], &[8], -1, false),
        Err(Error::InputLength { .. })
    ));
    let rows_only = AxisOptions {
        kernel: AxisKernel::Rows,
        where_shape: Some(vec![8]),
        ..AxisOptions::default()
    };
    assert!(matches!(
        AxisOp::with_options(gpu, RowFn::Logsumexp, &layout, -1, &rows_only),
        Err(Error::Unsupported(_))
    ));
}

/// NumPy's broadcast strides of a `where_shape` mask against `shape` (0 where it broadcasts).
fn where_strides_of(shape: &[usize], where_shape: &[usize]) -> Vec<usize> {
    let dense = logdomain::logsumexp::contiguous_strides(where_shape);
    let lead = shape.len() - where_shape.len();
    (0..shape.len())
        .map(|d| {
            if d < lead || where_shape[d - lead] == 1 {
                0
            } else {
                dense[d - lead]
            }
        })
        .collect()
}

/// SciPy's `b` and `return_sign` on N-d arrays, `b` broadcast as NumPy broadcasts, with and
/// without segments: the CPU mirror bit for bit, the 2-D weighted family within the contract,
/// SciPy's special cases, and the errors.
#[test]
fn nd_weights_broadcast_and_mirror_the_reference() {
    let gpu = gpu();
    let mut rng = Rng(24);
    let shape = [3usize, 5, 8];
    let x: Vec<f32> = rng
        .vec(120, -20.0, 20.0)
        .into_iter()
        .enumerate()
        .map(|(i, v)| match i % 23 {
            4 => NAN,
            11 => INF,
            17 => NEG_INF,
            _ => v,
        })
        .collect();
    let layout = NdLayout::contiguous(&shape);
    let dense = logdomain::logsumexp::contiguous_strides(&shape);
    for b_shape in [vec![8], vec![5, 1], vec![3, 5, 8], vec![], vec![1, 8]] {
        let bn: usize = b_shape.iter().product();
        let b: Vec<f32> = (0..bn)
            .map(|i| match i % 4 {
                0 => 1.5,
                1 => -0.75,
                2 => 0.0,
                _ => 2.0,
            })
            .collect();
        let bs = where_strides_of(&shape, &b_shape);
        let b_dense: Vec<f32> = nd_indices(&shape)
            .iter()
            .map(|idx| b[idx.iter().zip(&bs).map(|(i, s)| i * s).sum::<usize>()])
            .collect();
        for axes in [Axes::from(-1), Axes::from(0), Axes::from([0, 2]), Axes::All] {
            let reduced = axes.mask(3).unwrap();
            for seg in [0, 3] {
                let options = AxisOptions {
                    segment_len: seg,
                    b_shape: Some(b_shape.clone()),
                    ..AxisOptions::default()
                };
                let what = format!("b {b_shape:?} {axes:?} segments of {seg}");
                let op =
                    AxisOp::with_options(gpu, RowFn::Logsumexp, &layout, axes.clone(), &options)
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(op.kernel(), AxisKernel::Strided, "{what}");
                let n: usize = op.output_shape(false).iter().product();
                assert_eq!(op.signs_offset(), n, "{what}");
                let weights: &[f32] = if b.is_empty() { &[0.0] } else { &b };
                let got = record_nd(gpu, &op, &x, Some(bytemuck::cast_slice(weights)), 2 * n);
                let (logs, signs) = logdomain::reference::logsumexp::reduce_axes_weighted(
                    &x,
                    &shape,
                    &dense,
                    &b_dense,
                    &reduced,
                    op.segment_len(),
                );
                let want: Vec<f32> = logs.into_iter().chain(signs).collect();
                assert_mirror(&got, &want, &what);
            }
        }
    }
    // The 2-D weighted family's rows through the N-d call, per-element b.
    let (rows, cols) = (15, 8);
    let b: Vec<f32> = (0..rows * cols)
        .map(|i| [1.0, -0.5, 0.0, 3.0][i % 4])
        .collect();
    let (logs, signs) = gpu
        .reduce_axes_weighted(&x, &[rows, cols], &b, &[rows, cols], -1, false)
        .unwrap();
    let (want_l, want_s) = gpu.logsumexp_weighted(&x, &b, rows, cols).unwrap();
    assert_row(&signs.values, &want_s, "signs");
    for (g, w) in logs.values.iter().zip(&want_l) {
        assert!(
            same(*g, *w) || (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{g} {w}"
        );
    }
    // SciPy's cases: cancellation to a zero sum, zero weights on NaN and inf, an infinite term,
    // a negative sum.
    let cases: [([f32; 2], [f32; 2], f32, f32); 4] = [
        ([0.0, std::f32::consts::LN_2], [1.0, -0.5], NEG_INF, 0.0),
        ([NAN, 1.0], [0.0, 2.0], 1.0 + std::f32::consts::LN_2, 1.0),
        ([INF, 0.0], [-1.0, 1.0], INF, -1.0),
        ([0.0, 1.0], [1.0, -2.0], (2.0 * 1f32.exp() - 1.0).ln(), -1.0),
    ];
    for (xv, bv, l, s) in cases {
        let (got_l, got_s) = gpu
            .reduce_axes_weighted(&xv, &[2], &bv, &[2], 0, true)
            .unwrap();
        assert_eq!(got_l.shape, [1]);
        assert_eq!(got_s.values, [s], "{xv:?} {bv:?}");
        assert!(
            same(got_l.values[0], l) || (got_l.values[0] - l).abs() < 1e-6,
            "{xv:?} {bv:?}: {:?}",
            got_l.values
        );
    }
    // Errors.
    assert!(matches!(
        gpu.reduce_axes_weighted(&x, &shape, &[1.0; 3], &[3], -1, false),
        Err(Error::Shape(_))
    ));
    let both = AxisOptions {
        b_shape: Some(vec![8]),
        where_shape: Some(vec![8]),
        ..AxisOptions::default()
    };
    assert!(matches!(
        AxisOp::with_options(gpu, RowFn::Logsumexp, &layout, -1, &both),
        Err(Error::Unsupported(_))
    ));
    let softmax_b = AxisOptions {
        b_shape: Some(vec![8]),
        ..AxisOptions::default()
    };
    assert!(matches!(
        AxisOp::with_options(gpu, RowFn::Softmax, &layout, -1, &softmax_b),
        Err(Error::Unsupported(_))
    ));
}

/// The log-sum-exp parts over any axes (every result's m, then every result's log1p(s)): the
/// mirror bit for bit on the strided kernels; as states, chunks along a reduced axis merge into
/// the whole's log-sum-exp.
#[test]
fn nd_parts_mirror_the_reference_and_merge_across_chunks() {
    let gpu = gpu();
    let mut rng = Rng(25);
    let shape = [6usize, 4, 8];
    let mut x = rng.vec(192, -30.0, 30.0);
    x[5] = NAN;
    x[40] = INF;
    for v in &mut x[64..72] {
        *v = NEG_INF;
    }
    let layout = NdLayout::contiguous(&shape);
    for axes in [Axes::from(0), Axes::from(-1), Axes::from([0, 2]), Axes::All] {
        let reduced = axes.mask(3).unwrap();
        for (kernel, seg) in [
            (AxisKernel::Auto, 0),
            (AxisKernel::Strided, 5),
            (AxisKernel::StridedVec4, 0),
            (AxisKernel::StridedVec4, 5),
        ] {
            let what = format!("{axes:?} {kernel:?} {seg}");
            let options = AxisOptions {
                kernel,
                segment_len: seg,
                ..AxisOptions::default()
            };
            let op =
                AxisOp::with_options(gpu, RowFn::LogsumexpParts, &layout, axes.clone(), &options)
                    .unwrap();
            let n: usize = op.output_shape(false).iter().product();
            assert_eq!(op.signs_offset(), n, "{what}");
            assert_ne!(op.kernel(), AxisKernel::Rows, "{what}");
            let (_, got) =
                run_axes(gpu, RowFn::LogsumexpParts, &x, &layout, &axes, kernel, seg).unwrap();
            assert_eq!(got.len(), n, "{what}: run_axes reads the first block");
            let both = record_nd(gpu, &op, &x, None, 2 * n);
            let want = logdomain::reference::logsumexp::reduce_axes(
                RowFn::LogsumexpParts,
                &x,
                &shape,
                &layout.strides,
                &reduced,
                op.segment_len(),
            );
            assert_mirror(&both, &want, &what);
        }
    }
    // Chunks of axis 0 (rows 0..4 and 4..6), as Dask would compute them, merge into the whole.
    let (shape_a, a) = ([4usize, 4, 8], &x[..128]);
    let (shape_b, b) = ([2usize, 4, 8], &x[128..]);
    let (s, top) = gpu.reduce_axes_partial(a, &shape_a, 0, false).unwrap();
    let (_, bottom) = gpu.reduce_axes_partial(b, &shape_b, 0, false).unwrap();
    assert_eq!(s, [4, 8]);
    let merged: Vec<f32> = top
        .iter()
        .zip(&bottom)
        .map(|(t, u)| t.combine(*u).logsumexp())
        .collect();
    let whole = gpu
        .reduce_axes(RowFn::Logsumexp, &x, &shape, 0, false)
        .unwrap();
    let (rows, _, p, r) = nd_rows(&x, &layout, &[true, false, false], None);
    check(RowFn::Logsumexp, &merged, &rows, p, r, "merged chunks");
    check(RowFn::Logsumexp, &whole.values, &rows, p, r, "whole");
}

/// The backward ops over any axes: the CPU mirror bit for bit (with and without segments), the
/// row family's backward within the contract on rows, and the analytic gradient of logsumexp.
#[test]
fn nd_backward_ops_mirror_the_reference() {
    let gpu = gpu();
    let mut rng = Rng(26);
    let shape = [3usize, 5, 8];
    let x = rng.vec(120, -10.0, 10.0);
    let g: Vec<f32> = rng.vec(120, -2.0, 2.0);
    let layout = NdLayout::contiguous(&shape);
    for axes in [Axes::from(-1), Axes::from(0), Axes::from([0, 2]), Axes::All] {
        let reduced = axes.mask(3).unwrap();
        for func in [RowFn::Logsumexp, RowFn::Softmax, RowFn::LogSoftmax] {
            // The forward, and the gradient the backward takes: the output's shape.
            let fwd = gpu
                .reduce_axes(func, &x, &shape, axes.clone(), false)
                .unwrap();
            let (y, gin, lse): (Vec<f32>, Vec<f32>, Vec<f32>) = if func == RowFn::Logsumexp {
                let n = fwd.values.len();
                (x.clone(), g[..n].to_vec(), fwd.values.clone())
            } else {
                (fwd.values.clone(), g.clone(), Vec::new())
            };
            for seg in [0, 3] {
                let what = format!("{func:?} {axes:?} segments of {seg}");
                let options = AxisOptions {
                    backward: true,
                    segment_len: seg,
                    ..AxisOptions::default()
                };
                let op = AxisOp::with_options(gpu, func, &layout, axes.clone(), &options)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(op.output_shape(false), shape, "{what}");
                let second: Vec<f32> = gin.iter().chain(&lse).copied().collect();
                let got = record_nd(gpu, &op, &y, Some(bytemuck::cast_slice(&second)), 120);
                let want = logdomain::reference::logsumexp::reduce_axes_backward(
                    func,
                    &y,
                    &shape,
                    &layout.strides,
                    &gin,
                    &lse,
                    &reduced,
                    op.segment_len(),
                );
                assert_mirror(&got, &want, &what);
            }
        }
    }
    // On rows, the row family's backward ops: the same values within the contract.
    let (rows, cols) = (15, 8);
    let y = gpu.log_softmax(&x, rows, cols).unwrap();
    let nd = gpu
        .log_softmax_backward_axes(&y, &g, &[rows, cols], -1)
        .unwrap();
    let row = gpu.log_softmax_backward(&y, &g, rows, cols).unwrap();
    let p = gpu.softmax(&x, rows, cols).unwrap();
    let nd_p = gpu
        .softmax_backward_axes(&p, &g, &[rows, cols], -1)
        .unwrap();
    let row_p = gpu.softmax_backward(&p, &g, rows, cols).unwrap();
    for (a, b) in nd
        .values
        .iter()
        .zip(&row)
        .chain(nd_p.values.iter().zip(&row_p))
    {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} {b}");
    }
    // logsumexp's gradient with g = 1 is the softmax along the axis.
    let lse = gpu
        .reduce_axes(RowFn::Logsumexp, &x, &shape, 0, false)
        .unwrap();
    let dx = gpu
        .logsumexp_backward_axes(&x, &shape, &lse.values, &[1.0; 40], 0)
        .unwrap();
    let sm = gpu
        .reduce_axes(RowFn::Softmax, &x, &shape, 0, false)
        .unwrap();
    for (a, b) in dx.values.iter().zip(&sm.values) {
        assert!((a - b).abs() <= 1e-6, "{a} {b}");
    }
    // Errors.
    assert!(matches!(
        gpu.logsumexp_backward_axes(&x, &shape, &lse.values, &[1.0; 39], 0),
        Err(Error::InputLength { .. })
    ));
    assert!(matches!(
        gpu.softmax_backward_axes(&p, &g[..119], &shape, 0),
        Err(Error::InputLength { .. })
    ));
    let with_mask = AxisOptions {
        backward: true,
        where_shape: Some(vec![8]),
        ..AxisOptions::default()
    };
    assert!(matches!(
        AxisOp::with_options(gpu, RowFn::Softmax, &layout, 0, &with_mask),
        Err(Error::Unsupported(_))
    ));
}
