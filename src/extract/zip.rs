//! Zip archives (Sectigo and RapidSSL deliver a zip of `.crt`/`.cer`/`.ca-bundle` files),
//! opened in memory with limits on entries, sizes and compression ratio. Declared sizes
//! are not trusted: each entry is read through a cap one byte past its limit.

use std::io::{Cursor, Read};

use super::Limits;

/// What the reader gives for one entry, in archive order.
pub enum ZipItem {
    File {
        name: String,
        bytes: Vec<u8>,
    },
    /// (place suffix, what went wrong)
    Problem(String, String),
}

/// Local file header or end-of-central-directory (an empty archive) signature.
pub fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// Entries smaller than this are never judged by their compression ratio: tiny files
/// compress oddly (a few bytes of header, or a run of padding).
const RATIO_FLOOR: u64 = 64 * 1024;

/// The entries of one archive, unpacked one at a time, so that only the entry being read
/// is in memory: the archives of one message may unpack to `max_zip_total_size` in all.
pub struct ZipReader<'b> {
    archive: Option<zip::ZipArchive<Cursor<&'b [u8]>>>,
    /// The archive could not be opened: the one problem to give.
    refused: Option<String>,
    index: usize,
}

impl<'b> ZipReader<'b> {
    pub fn new(bytes: &'b [u8], limits: &Limits) -> ZipReader<'b> {
        match open(bytes, limits) {
            Ok(archive) => ZipReader {
                archive: Some(archive),
                refused: None,
                index: 0,
            },
            Err(problem) => ZipReader {
                archive: None,
                refused: Some(problem),
                index: 0,
            },
        }
    }

    /// The next entry or problem. `budget` is what may still be unpacked in the whole
    /// message: every byte decompressed counts against it, refused entries and nested
    /// archives included, so a zip of zip bombs costs no more than one `max_zip_total_size`.
    pub fn next(&mut self, limits: &Limits, budget: &mut u64) -> Option<ZipItem> {
        if let Some(problem) = self.refused.take() {
            return Some(ZipItem::Problem(String::new(), problem));
        }
        let archive = self.archive.as_mut()?;
        while self.index < archive.len() {
            let index = self.index;
            self.index += 1;
            let mut entry = match archive.by_index(index) {
                Ok(entry) => entry,
                Err(e) => {
                    return Some(ZipItem::Problem(
                        format!(", zip entry #{}", index + 1),
                        format!("could not be read: {e}"),
                    ));
                }
            };
            let name = entry
                .name()
                .map(|n| n.into_owned())
                .unwrap_or_else(|_| format!("#{}", index + 1));
            let place = format!(", zip entry '{name}'");
            if entry.is_dir() {
                continue;
            }
            if entry.encrypted() {
                return Some(ZipItem::Problem(place, "is encrypted; not read".into()));
            }
            let compressed = entry.compressed_size();
            let unpacked = unpack(&mut entry, compressed, limits, budget);
            drop(entry);
            return Some(match unpacked {
                Unpacked::File(bytes) => ZipItem::File { name, bytes },
                Unpacked::Refused(problem) => ZipItem::Problem(place, problem),
                Unpacked::BudgetSpent(problem) => {
                    // Neither this entry nor later ones are read.
                    self.archive = None;
                    ZipItem::Problem(place, problem)
                }
            });
        }
        None
    }
}

/// Opens the archive, unless it cannot be read or has more entries than `max_zip_entries`.
fn open<'b>(bytes: &'b [u8], limits: &Limits) -> Result<zip::ZipArchive<Cursor<&'b [u8]>>, String> {
    let archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("zip archive could not be opened: {e}"))?;
    let count = archive.len();
    if count > limits.max_zip_entries {
        return Err(format!(
            "zip archive has {count} entries, over the limit of {} (max_zip_entries); not opened",
            limits.max_zip_entries
        ));
    }
    Ok(archive)
}

/// What became of one entry.
enum Unpacked {
    File(Vec<u8>),
    /// Not read, for the reason given; later entries still are.
    Refused(String),
    /// The message's unpack budget ran out: neither this entry nor later ones are read.
    BudgetSpent(String),
}

/// Decompresses one entry of `compressed` bytes (as declared), charging `budget` with
/// every byte unpacked.
fn unpack(entry: &mut impl Read, compressed: u64, limits: &Limits, budget: &mut u64) -> Unpacked {
    // Stop reading at the first limit the entry can break, so a bomb is never
    // unpacked past it: declared sizes are not trusted, the byte count is.
    let compressed = compressed.max(1);
    let by_ratio = compressed
        .saturating_mul(limits.max_zip_ratio)
        .max(RATIO_FLOOR);
    let remaining = *budget;
    let cap = limits.max_zip_entry_size.min(remaining).min(by_ratio);
    let mut data = Vec::new();
    let read = entry.take(cap.saturating_add(1)).read_to_end(&mut data);
    let size = data.len() as u64;
    *budget = budget.saturating_sub(size);
    if let Err(e) = read {
        return Unpacked::Refused(format!("could not be decompressed: {e}"));
    }
    if size <= cap {
        return Unpacked::File(data);
    }
    if cap == remaining && remaining < limits.max_zip_entry_size.min(by_ratio) {
        return Unpacked::BudgetSpent(format!(
            "the zip archives in the message unpack to more than {} bytes (max_zip_total_size); \
             this and later entries were not read",
            limits.max_zip_total_size
        ));
    }
    Unpacked::Refused(if cap == by_ratio && by_ratio < limits.max_zip_entry_size {
        format!(
            "unpacks to more than {}:1 of its compressed size of {compressed} bytes (max_zip_ratio); not read",
            limits.max_zip_ratio
        )
    } else {
        format!(
            "unpacks to more than {} bytes (max_zip_entry_size); not read",
            limits.max_zip_entry_size
        )
    })
}
