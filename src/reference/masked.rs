//! CPU mirror of `shaders/masked.wgsl` around the log-sum-exp family's mirror: masked entries
//! replaced by −inf, the row function, then 0 (softmax) or −inf (log_softmax) at masked entries.

use super::logsumexp::RowFn;
use super::logsumexp::{log_softmax, logsumexp, softmax};

/// `func` (`Logsumexp`, `Softmax` or `LogSoftmax`) of each row over the entries where `where_`
/// is true.
pub fn masked(func: RowFn, x: &[f32], where_: &[bool], rows: usize, cols: usize) -> Vec<f32> {
    let xm: Vec<f32> = x
        .iter()
        .zip(where_)
        .map(|(&v, &w)| if w { v } else { f32::NEG_INFINITY })
        .collect();
    match func {
        RowFn::Logsumexp => logsumexp(&xm, rows, cols),
        RowFn::Softmax | RowFn::LogSoftmax => {
            let (out, fill) = if func == RowFn::Softmax {
                (softmax(&xm, rows, cols), 0.0)
            } else {
                (log_softmax(&xm, rows, cols), f32::NEG_INFINITY)
            };
            out.iter()
                .zip(where_)
                .map(|(&v, &w)| if w { v } else { fill })
                .collect()
        }
        RowFn::LogsumexpParts => panic!("masks are for logsumexp, softmax and log_softmax"),
    }
}
