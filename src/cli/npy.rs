//! `.npy` files in and out through `npyz`: f32 arrays (C order), integer targets, and outputs
//! written to temporary files that are renamed into place only when all are complete.

use std::io::Write;
use std::path::{Path, PathBuf};

use npyz::WriterBuilder;

/// An array read from a `.npy` file: its shape and its values in C order.
pub struct Array<T> {
    pub shape: Vec<u64>,
    pub data: Vec<T>,
}

impl<T> Array<T> {
    /// `rows × cols` of a 2-D array.
    pub fn matrix(&self, path: &Path) -> Result<(usize, usize), String> {
        matrix_of(&self.shape, path)
    }
}

/// `rows × cols` of a 2-D shape, or an error naming the file.
fn matrix_of(shape: &[u64], path: &Path) -> Result<(usize, usize), String> {
    match shape {
        [r, c] => Ok((*r as usize, *c as usize)),
        _ => Err(format!(
            "{}: expected a 2-D array, got shape {shape:?}",
            path.display()
        )),
    }
}

fn open_any(path: &Path) -> Result<npyz::NpyFile<std::io::Cursor<Vec<u8>>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    npyz::NpyFile::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("{}: not a readable .npy file ({e})", path.display()))
}

fn open(path: &Path) -> Result<npyz::NpyFile<std::io::Cursor<Vec<u8>>>, String> {
    let npy = open_any(path)?;
    if npy.order() != npyz::Order::C {
        return Err(format!(
            "{}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray",
            path.display()
        ));
    }
    Ok(npy)
}

fn type_str(npy: &npyz::NpyFile<std::io::Cursor<Vec<u8>>>) -> String {
    match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => format!("{other:?}"),
    }
}

fn values<T: npyz::Deserialize>(
    npy: npyz::NpyFile<std::io::Cursor<Vec<u8>>>,
    path: &Path,
) -> Result<Vec<T>, String> {
    let expected = npy.len();
    npy.into_vec::<T>().map_err(|e| {
        format!(
            "{}: truncated or unreadable data (expected {expected} values: {e})",
            path.display()
        )
    })
}

/// A float32 array (`<f4`).
pub fn read_f32(path: &Path) -> Result<Array<f32>, String> {
    f32_of(open(path)?, path)
}

/// A float32 array in either order: its values in the file's order, and whether that order is
/// Fortran's (column-major).
pub fn read_f32_any_order(path: &Path) -> Result<(Array<f32>, bool), String> {
    let npy = open_any(path)?;
    let fortran = npy.order() == npyz::Order::Fortran;
    Ok((f32_of(npy, path)?, fortran))
}

fn f32_of(npy: npyz::NpyFile<std::io::Cursor<Vec<u8>>>, path: &Path) -> Result<Array<f32>, String> {
    let ts = type_str(&npy);
    if ts != "<f4" {
        return Err(format!(
            "{}: dtype {ts}; expected float32 (<f4) — convert with x.astype(np.float32)",
            path.display()
        ));
    }
    let shape = npy.shape().to_vec();
    Ok(Array {
        shape,
        data: values(npy, path)?,
    })
}

/// A float32 C-order array read in place from a memory-mapped file: the points of `fit` and of
/// the mixture ops, which may be larger than memory. (Copied into memory only where the file's
/// data does not start on a 4-byte boundary, which `np.save` never writes.)
pub struct MappedF32 {
    pub shape: Vec<u64>,
    data: Mapped,
}

enum Mapped {
    Map {
        map: memmap2::Mmap,
        start: usize,
        len: usize,
    },
    Owned(Vec<f32>),
}

impl MappedF32 {
    /// The values in C order.
    pub fn data(&self) -> &[f32] {
        match &self.data {
            Mapped::Map { map, start, len } => {
                bytemuck::try_cast_slice(&map[*start..*start + *len * 4]).unwrap_or(&[])
            }
            Mapped::Owned(v) => v,
        }
    }

    /// `rows × cols` of a 2-D array.
    pub fn matrix(&self, path: &Path) -> Result<(usize, usize), String> {
        matrix_of(&self.shape, path)
    }
}

/// A float32 (`<f4`) C-order array, memory-mapped (see [`MappedF32`]).
pub fn read_f32_mapped(path: &Path) -> Result<MappedF32, String> {
    let at = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(at)?;
    // SAFETY: the map is read only, and only while the command runs; a file truncated by
    // another process meanwhile is outside what the command can guard against (as for any
    // reader of a mapped file).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(at)?;
    let npy = npyz::NpyFile::new(&map[..])
        .map_err(|e| format!("{}: not a readable .npy file ({e})", path.display()))?;
    if npy.order() != npyz::Order::C {
        return Err(format!(
            "{}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray",
            path.display()
        ));
    }
    let ts = match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => format!("{other:?}"),
    };
    if ts != "<f4" {
        return Err(format!(
            "{}: dtype {ts}; expected float32 (<f4) — convert with x.astype(np.float32)",
            path.display()
        ));
    }
    let shape = npy.shape().to_vec();
    let len = usize::try_from(npy.len()).map_err(|e| e.to_string())?;
    drop(npy);
    // The header's length: 2 bytes at 8 in version 1, 4 bytes in versions 2 and 3.
    let start = match map.get(6) {
        Some(1) => map
            .get(8..10)
            .map(|b| 10 + usize::from(u16::from_le_bytes([b[0], b[1]]))),
        Some(2 | 3) => map
            .get(8..12)
            .map(|b| 12 + u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize),
        _ => None,
    };
    let end = start.and_then(|s| len.checked_mul(4).and_then(|b| b.checked_add(s)));
    let (Some(start), Some(end)) = (start, end) else {
        return Err(format!("{}: not a readable .npy header", path.display()));
    };
    if end > map.len() {
        return Err(format!(
            "{}: truncated data (expected {len} values)",
            path.display()
        ));
    }
    let data = if bytemuck::try_cast_slice::<u8, f32>(&map[start..end]).is_ok() {
        Mapped::Map { map, start, len }
    } else {
        Mapped::Owned(
            map[start..end]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    };
    Ok(MappedF32 { shape, data })
}

/// A categorical loss's targets: class indices, or class probabilities (float32).
pub enum Targets {
    Classes(Array<i64>),
    Probabilities(Array<f32>),
}

/// Class indices (as [`read_targets`]) or float32 class probabilities.
pub fn read_categorical(path: &Path) -> Result<Targets, String> {
    let npy = open(path)?;
    if type_str(&npy) == "<f4" {
        return Ok(Targets::Probabilities(f32_of(npy, path)?));
    }
    indices_of(npy, path).map(Targets::Classes)
}

/// Integer class indices (`<i8` or `<i4`), as i64.
pub fn read_targets(path: &Path) -> Result<Array<i64>, String> {
    indices_of(open(path)?, path)
}

fn indices_of(
    npy: npyz::NpyFile<std::io::Cursor<Vec<u8>>>,
    path: &Path,
) -> Result<Array<i64>, String> {
    let ts = type_str(&npy);
    let shape = npy.shape().to_vec();
    let data = match ts.as_str() {
        "<i8" => values::<i64>(npy, path)?,
        "<i4" => values::<i32>(npy, path)?
            .into_iter()
            .map(i64::from)
            .collect(),
        _ => {
            return Err(format!(
                "{}: dtype {ts}; expected integer class indices (int64 <i8 or int32 <i4), or \
                 float32 class probabilities for cross_entropy",
                path.display()
            ));
        }
    };
    Ok(Array { shape, data })
}

/// Writes float32 arrays `(path, shape, data)`: each to a temporary file beside its path first,
/// then all renamed into place, so that a failure leaves no partial output (and no stale
/// temporary behind).
pub fn write_all(files: &[(&Path, &[u64], &[f32])]) -> Result<(), String> {
    let mut temps: Vec<(PathBuf, &Path)> = Vec::new();
    let result = (|| -> Result<(), String> {
        for &(path, shape, data) in files {
            let tmp = super::partial_path(path)?;
            temps.push((tmp.clone(), path));
            let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
            let file = std::fs::File::create(&tmp).map_err(|e| fail(&e))?;
            let mut out = std::io::BufWriter::new(file);
            let mut writer = npyz::WriteOptions::new()
                .default_dtype()
                .shape(shape)
                .writer(&mut out)
                .begin_nd()
                .map_err(|e| fail(&e))?;
            writer.extend(data.iter().copied()).map_err(|e| fail(&e))?;
            writer.finish().map_err(|e| fail(&e))?;
            out.flush().map_err(|e| fail(&e))?;
        }
        for (tmp, path) in &temps {
            std::fs::rename(tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    })();
    if result.is_err() {
        for (tmp, _) in &temps {
            let _ = std::fs::remove_file(tmp);
        }
    }
    result
}
