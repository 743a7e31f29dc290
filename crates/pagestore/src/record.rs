//! Binary layouts of page records and page-map chunks, with their checksums.
//!
//! All integers are little-endian. See `docs/format.md`.

/// Magic of a segment object: ASCII `FSEG`.
pub const SEGMENT_MAGIC: [u8; 4] = *b"FSEG";
/// Magic of a page record: ASCII `FPAG`.
pub const RECORD_MAGIC: [u8; 4] = *b"FPAG";
/// Magic of a page-map chunk object: ASCII `FMAP`.
pub const MAP_MAGIC: [u8; 4] = *b"FMAP";
/// Version of the segment and map layouts. Version 2 added the segment (epoch
/// and sequence number) to the identity a page record's checksum covers.
pub const LAYOUT_VERSION: u32 = 2;

/// Bytes of a segment header: magic, version, epoch, sequence number, reserved.
pub const SEGMENT_HEADER_BYTES: usize = 24;
/// Bytes of a page record header: magic, page, epoch, length, checksum.
pub const RECORD_HEADER_BYTES: usize = 24;
/// Pages described by one page-map chunk.
pub const CHUNK_PAGES: u32 = 4096;
/// Bytes of one page-map entry.
pub const MAP_ENTRY_BYTES: usize = 16;
/// Bytes of a page-map chunk header: magic, version, epoch, chunk index, entry count.
pub const MAP_HEADER_BYTES: usize = 24;
/// Bytes of a page-map chunk object: header, entries and checksum. Every chunk
/// has exactly this size, so a reader never fetches more.
pub const MAP_BYTES: usize = MAP_HEADER_BYTES + CHUNK_PAGES as usize * MAP_ENTRY_BYTES + 4;

/// Magic of a page-map delta object: ASCII `FMDL`.
pub const DELTA_MAGIC: [u8; 4] = *b"FMDL";
/// The chunk index in the name of an epoch's page-map delta object (no chunk
/// has it: a 32-bit heap of 4 KiB pages has 256 chunks, and every chunk index
/// is below `2^32 / CHUNK_PAGES`).
pub const DELTA_CHUNK: u32 = u32::MAX;
/// Bytes of a page-map delta header: magic, version, epoch, entry count, reserved.
pub const DELTA_HEADER_BYTES: usize = 24;
/// Bytes of one delta entry: the page, then its location as in a chunk.
pub const DELTA_ENTRY_BYTES: usize = 4 + MAP_ENTRY_BYTES;
/// The most entries one delta object holds (a quarter of a 4 GiB heap's
/// pages); a reader fetches no more than such an object.
pub const DELTA_ENTRIES_MAX: usize = 1 << 18;
/// Bytes of the largest delta object.
pub const DELTA_BYTES_MAX: usize = DELTA_HEADER_BYTES + DELTA_ENTRIES_MAX * DELTA_ENTRY_BYTES + 4;

/// The largest epoch the format allows. Epochs count checkpoints from 1, so
/// this is never reached by a real process (a checkpoint every millisecond for
/// over a hundred million years); a stored epoch above it is damage, and every
/// epoch up to it can be followed by another (`epoch + 1` never overflows).
pub const EPOCH_MAX: u64 = 1 << 62;

/// Where a page version is stored: segment `(epoch, seq)` at byte `offset`.
/// `epoch == 0` means "no version": the page reads as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Location {
    pub epoch: u64,
    pub seq: u32,
    pub offset: u32,
}

impl Location {
    /// The location of a page that was never written.
    pub const NONE: Location = Location {
        epoch: 0,
        seq: 0,
        offset: 0,
    };

    /// True if the page has a stored version.
    pub fn is_some(self) -> bool {
        self.epoch != 0
    }

    /// The segment this location is in.
    pub fn segment(self) -> SegmentId {
        SegmentId {
            epoch: self.epoch,
            seq: self.seq,
        }
    }
}

/// A segment object: the `seq`-th segment written while building `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId {
    pub epoch: u64,
    pub seq: u32,
}

impl SegmentId {
    /// The object name under a process prefix, written by the runner of
    /// writer generation `generation` (0: a store of format version 2, whose
    /// names carry no generation).
    pub fn key(self, prefix: &str, generation: u64) -> String {
        if generation == 0 {
            format!("{prefix}segments/{:016x}-{:08x}", self.epoch, self.seq)
        } else {
            format!(
                "{prefix}segments/{:016x}-{generation:016x}-{:08x}",
                self.epoch, self.seq
            )
        }
    }
}

/// The object name of page-map chunk `chunk` written at `epoch` by the runner
/// of writer generation `generation` (0: no generation, format version 2).
pub fn map_key(prefix: &str, epoch: u64, generation: u64, chunk: u32) -> String {
    if generation == 0 {
        format!("{prefix}maps/{epoch:016x}-{chunk:08x}")
    } else {
        format!("{prefix}maps/{epoch:016x}-{generation:016x}-{chunk:08x}")
    }
}

/// The epoch and writer generation in the name of a segment or map object
/// (the last component of `key`); `None` if the name is not of the format.
pub fn object_epoch_generation(key: &str) -> Option<(u64, u64)> {
    let name = key.rsplit('/').next()?;
    let parts: Vec<&str> = name.split('-').collect();
    let hex = |part: &str, len: usize| {
        (part.len() == len)
            .then(|| u64::from_str_radix(part, 16).ok())
            .flatten()
    };
    match parts.as_slice() {
        [epoch, last] => Some((hex(epoch, 16)?, hex(last, 8).map(|_| 0)?)),
        [epoch, generation, last] => {
            hex(last, 8)?;
            Some((hex(epoch, 16)?, hex(generation, 16)?))
        }
        _ => None,
    }
}

/// The checksum of a record: its identity (page, and the segment it was
/// written to: epoch and sequence number), its length and its data. The
/// sequence number is not stored in the record; the reader knows it from the
/// page map, so a record read from the wrong segment of the right epoch fails.
fn record_checksum(page: u32, segment: SegmentId, data: &[u8]) -> u32 {
    let mut crc = crc32c::crc32c(&page.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &segment.epoch.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &segment.seq.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &(data.len() as u32).to_le_bytes());
    crc32c::crc32c_append(crc, data)
}

/// The header of a new segment.
pub fn segment_header(id: SegmentId) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0; SEGMENT_HEADER_BYTES];
    header[0..4].copy_from_slice(&SEGMENT_MAGIC);
    header[4..8].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
    header[8..16].copy_from_slice(&id.epoch.to_le_bytes());
    header[16..20].copy_from_slice(&id.seq.to_le_bytes());
    header
}

/// Appends a page record of segment `segment` to `out`.
pub fn encode_record(out: &mut Vec<u8>, page: u32, segment: SegmentId, data: &[u8]) {
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&page.to_le_bytes());
    out.extend_from_slice(&segment.epoch.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&record_checksum(page, segment, data).to_le_bytes());
    out.extend_from_slice(data);
}

/// Writes a page record over `slot`, which must be exactly one record long.
///
/// # Panics
/// If `slot` is not `RECORD_HEADER_BYTES + data.len()` bytes.
pub fn encode_record_in(slot: &mut [u8], page: u32, segment: SegmentId, data: &[u8]) {
    assert_eq!(slot.len(), RECORD_HEADER_BYTES + data.len(), "record slot");
    slot[0..4].copy_from_slice(&RECORD_MAGIC);
    slot[4..8].copy_from_slice(&page.to_le_bytes());
    slot[8..16].copy_from_slice(&segment.epoch.to_le_bytes());
    slot[16..20].copy_from_slice(&(data.len() as u32).to_le_bytes());
    slot[20..24].copy_from_slice(&record_checksum(page, segment, data).to_le_bytes());
    slot[RECORD_HEADER_BYTES..].copy_from_slice(data);
}

/// Why stored bytes were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("bad magic")]
    Magic,
    #[error("unsupported layout version {0}")]
    Version(u32),
    #[error("checksum mismatch")]
    Checksum,
    #[error("truncated")]
    Truncated,
    #[error(
        "record is for page {found_page} epoch {found_epoch}, expected page {page} epoch {epoch}"
    )]
    Misdirected {
        page: u32,
        epoch: u64,
        found_page: u32,
        found_epoch: u64,
    },
    #[error("wrong length {0}")]
    Length(u32),
    /// A committed object that should exist does not.
    #[error("missing")]
    Missing,
    /// The object is longer than the format allows for its kind.
    #[error("longer than the format allows ({max} bytes)")]
    Oversized { max: u64 },
    /// A page-map entry that cannot be a record location.
    #[error("page-map entry {index}: {reason}")]
    Entry { index: u32, reason: &'static str },
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Checks a page record read back for `page` from segment `segment` and copies
/// its data out.
///
/// # Errors
/// If the magic, length, page, segment or checksum is not what was written.
pub fn decode_record(
    bytes: &[u8],
    page: u32,
    segment: SegmentId,
    out: &mut [u8],
) -> Result<(), FormatError> {
    let epoch = segment.epoch;
    if bytes.len() != RECORD_HEADER_BYTES + out.len() {
        return Err(FormatError::Truncated);
    }
    if bytes[0..4] != RECORD_MAGIC {
        return Err(FormatError::Magic);
    }
    let (found_page, found_epoch, len) = (u32_at(bytes, 4), u64_at(bytes, 8), u32_at(bytes, 16));
    if len as usize != out.len() {
        return Err(FormatError::Length(len));
    }
    let data = &bytes[RECORD_HEADER_BYTES..];
    let found = SegmentId {
        epoch: found_epoch,
        seq: segment.seq,
    };
    if u32_at(bytes, 20) != record_checksum(found_page, found, data) {
        return Err(FormatError::Checksum);
    }
    if (found_page, found_epoch) != (page, epoch) {
        return Err(FormatError::Misdirected {
            page,
            epoch,
            found_page,
            found_epoch,
        });
    }
    out.copy_from_slice(data);
    Ok(())
}

/// Encodes page-map chunk `chunk` written at `epoch`.
pub fn encode_map(epoch: u64, chunk: u32, entries: &[Location]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAP_HEADER_BYTES + entries.len() * MAP_ENTRY_BYTES + 4);
    out.extend_from_slice(&MAP_MAGIC);
    out.extend_from_slice(&LAYOUT_VERSION.to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&chunk.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        out.extend_from_slice(&entry.epoch.to_le_bytes());
        out.extend_from_slice(&entry.seq.to_le_bytes());
        out.extend_from_slice(&entry.offset.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a page-map chunk, checking it is chunk `chunk` of `epoch`.
///
/// # Errors
/// If the bytes are not such a chunk, or fail their checksum.
pub fn decode_map(bytes: &[u8], epoch: u64, chunk: u32) -> Result<Vec<Location>, FormatError> {
    if bytes.len() != MAP_BYTES {
        return Err(FormatError::Truncated);
    }
    if bytes[0..4] != MAP_MAGIC {
        return Err(FormatError::Magic);
    }
    let version = u32_at(bytes, 4);
    if version != LAYOUT_VERSION {
        return Err(FormatError::Version(version));
    }
    let body = &bytes[..bytes.len() - 4];
    if u32_at(bytes, bytes.len() - 4) != crc32c::crc32c(body) {
        return Err(FormatError::Checksum);
    }
    let (found_epoch, found_chunk) = (u64_at(bytes, 8), u32_at(bytes, 16));
    if (found_epoch, found_chunk) != (epoch, chunk) || u32_at(bytes, 20) != CHUNK_PAGES {
        return Err(FormatError::Misdirected {
            page: chunk,
            epoch,
            found_page: found_chunk,
            found_epoch,
        });
    }
    Ok(body[MAP_HEADER_BYTES..]
        .chunks_exact(MAP_ENTRY_BYTES)
        .map(|e| Location {
            epoch: u64_at(e, 0),
            seq: u32_at(e, 8),
            offset: u32_at(e, 12),
        })
        .collect())
}

/// Encodes the page-map delta of `epoch`: the new locations of the pages it
/// lists, which must be in ascending order, each once, at most
/// [`DELTA_ENTRIES_MAX`].
///
/// # Panics
/// If `entries` breaks those rules (a bug of the writer).
pub fn encode_delta(epoch: u64, entries: &[(u32, Location)]) -> Vec<u8> {
    assert!(
        entries.len() <= DELTA_ENTRIES_MAX,
        "delta of {} entries",
        entries.len()
    );
    assert!(
        entries.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "delta entries in ascending page order"
    );
    let mut out = Vec::with_capacity(DELTA_HEADER_BYTES + entries.len() * DELTA_ENTRY_BYTES + 4);
    out.extend_from_slice(&DELTA_MAGIC);
    out.extend_from_slice(&LAYOUT_VERSION.to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for (page, entry) in entries {
        out.extend_from_slice(&page.to_le_bytes());
        out.extend_from_slice(&entry.epoch.to_le_bytes());
        out.extend_from_slice(&entry.seq.to_le_bytes());
        out.extend_from_slice(&entry.offset.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes the page-map delta of `epoch`.
///
/// # Errors
/// If the bytes are not such a delta (damaged, another epoch's, pages out of
/// order or repeated).
pub fn decode_delta(bytes: &[u8], epoch: u64) -> Result<Vec<(u32, Location)>, FormatError> {
    if bytes.len() < DELTA_HEADER_BYTES + 4 {
        return Err(FormatError::Truncated);
    }
    if bytes[0..4] != DELTA_MAGIC {
        return Err(FormatError::Magic);
    }
    let version = u32_at(bytes, 4);
    if version != LAYOUT_VERSION {
        return Err(FormatError::Version(version));
    }
    let body = &bytes[..bytes.len() - 4];
    if u32_at(bytes, bytes.len() - 4) != crc32c::crc32c(body) {
        return Err(FormatError::Checksum);
    }
    let found_epoch = u64_at(bytes, 8);
    if found_epoch != epoch {
        return Err(FormatError::Misdirected {
            page: DELTA_CHUNK,
            epoch,
            found_page: DELTA_CHUNK,
            found_epoch,
        });
    }
    let count = u32_at(bytes, 16) as usize;
    if count > DELTA_ENTRIES_MAX || body.len() != DELTA_HEADER_BYTES + count * DELTA_ENTRY_BYTES {
        return Err(FormatError::Length(count as u32));
    }
    let entries: Vec<(u32, Location)> = body[DELTA_HEADER_BYTES..]
        .chunks_exact(DELTA_ENTRY_BYTES)
        .map(|e| {
            let location = Location {
                epoch: u64_at(e, 4),
                seq: u32_at(e, 12),
                offset: u32_at(e, 16),
            };
            (u32_at(e, 0), location)
        })
        .collect();
    if let Some(at) = entries.windows(2).position(|pair| pair[0].0 >= pair[1].0) {
        return Err(FormatError::Entry {
            index: at as u32 + 1,
            reason: "pages out of order or repeated",
        });
    }
    Ok(entries)
}

/// Checks that a page-map entry of a chunk version written at `chunk_epoch`
/// can be the location of a record of `record_len` bytes: no newer than the
/// chunk, at a record boundary of a segment no larger than `segment_bytes_max`.
/// (That its segment holds live records is for the page store to check.)
///
/// # Errors
/// What is wrong with the entry, for [`FormatError::Entry`].
pub fn check_entry(
    entry: Location,
    chunk_epoch: u64,
    record_len: usize,
    segment_bytes_max: usize,
) -> Result<(), &'static str> {
    if !entry.is_some() {
        return if entry == Location::NONE {
            Ok(())
        } else {
            Err("no segment but a sequence number or offset")
        };
    }
    if entry.epoch > chunk_epoch {
        return Err("names a segment newer than its chunk");
    }
    let offset = entry.offset as usize;
    let Some(records) = offset.checked_sub(SEGMENT_HEADER_BYTES) else {
        return Err("offset inside the segment header");
    };
    if records % record_len != 0 {
        return Err("offset not at a record boundary");
    }
    if offset + record_len > segment_bytes_max {
        return Err("offset past the largest segment");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_round_trip_and_detect_damage() {
        let data = vec![7u8; 4096];
        let segment = SegmentId { epoch: 9, seq: 2 };
        let mut bytes = Vec::new();
        encode_record(&mut bytes, 5, segment, &data);
        let mut out = vec![0; 4096];
        decode_record(&bytes, 5, segment, &mut out).unwrap();
        assert_eq!(out, data);
        let mut slot = vec![0xaa; bytes.len()];
        encode_record_in(&mut slot, 5, segment, &data);
        assert_eq!(slot, bytes, "both encodings agree");
        assert!(matches!(
            decode_record(&bytes, 6, segment, &mut out),
            Err(FormatError::Misdirected { .. })
        ));
        let older = SegmentId { epoch: 8, seq: 2 };
        assert!(matches!(
            decode_record(&bytes, 5, older, &mut out),
            Err(FormatError::Misdirected { .. })
        ));
        for at in [0, 4, 8, 16, 20, 24, 4000] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(
                decode_record(&damaged, 5, segment, &mut out).is_err(),
                "flip at {at} undetected"
            );
        }
    }

    #[test]
    fn a_record_read_from_another_segment_of_its_epoch_is_refused() {
        let data = vec![7u8; 4096];
        let mut bytes = Vec::new();
        encode_record(&mut bytes, 5, SegmentId { epoch: 9, seq: 2 }, &data);
        let mut out = vec![0; 4096];
        assert_eq!(
            decode_record(&bytes, 5, SegmentId { epoch: 9, seq: 3 }, &mut out),
            Err(FormatError::Checksum)
        );
    }

    #[test]
    fn map_entries_that_cannot_be_record_locations_are_refused() {
        let record = RECORD_HEADER_BYTES + 4096;
        let at = |epoch, offset| Location {
            epoch,
            seq: 0,
            offset,
        };
        let max = 1 << 20;
        assert!(check_entry(Location::NONE, 3, record, max).is_ok());
        assert!(check_entry(at(3, 24), 3, record, max).is_ok());
        assert!(check_entry(at(4, 24), 3, record, max).is_err(), "newer");
        assert!(check_entry(at(3, 0), 3, record, max).is_err(), "header");
        assert!(check_entry(at(3, 25), 3, record, max).is_err(), "boundary");
        let past = (SEGMENT_HEADER_BYTES + 255 * record) as u32;
        assert!(check_entry(at(3, past), 3, record, max).is_err(), "past");
        assert!(check_entry(at(3, u32::MAX), 3, record, max).is_err());
        assert!(check_entry(at(0, 24), 3, record, max).is_err(), "junk");
    }

    #[test]
    fn maps_round_trip_and_detect_damage() {
        let mut entries = vec![Location::NONE; CHUNK_PAGES as usize];
        entries[3] = Location {
            epoch: 2,
            seq: 1,
            offset: 24,
        };
        let bytes = encode_map(4, 1, &entries);
        assert_eq!(decode_map(&bytes, 4, 1).unwrap(), entries);
        assert!(decode_map(&bytes, 4, 2).is_err());
        let mut damaged = bytes.clone();
        damaged[MAP_HEADER_BYTES + 3 * MAP_ENTRY_BYTES] ^= 1;
        assert_eq!(decode_map(&damaged, 4, 1), Err(FormatError::Checksum));
    }

    #[test]
    fn deltas_round_trip_and_detect_damage() {
        let at = |offset| Location {
            epoch: 3,
            seq: 0,
            offset,
        };
        let entries = vec![(1, at(24)), (4097, at(4144)), (9000, Location::NONE)];
        let bytes = encode_delta(5, &entries);
        assert_eq!(decode_delta(&bytes, 5).unwrap(), entries);
        assert!(matches!(
            decode_delta(&bytes, 6),
            Err(FormatError::Misdirected { .. })
        ));
        assert_eq!(decode_delta(&encode_delta(5, &[]), 5).unwrap(), vec![]);
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x04;
            assert!(
                decode_delta(&damaged, 5).is_err(),
                "flip at {at} undetected"
            );
        }
        assert_eq!(
            decode_delta(&bytes[..bytes.len() - 1], 5).map(|_| ()),
            Err(FormatError::Checksum)
        );
        // Pages out of order, with a checksum that matches: a broken writer.
        let mut unordered = encode_delta(5, &entries[..2]);
        unordered[DELTA_HEADER_BYTES..DELTA_HEADER_BYTES + 4]
            .copy_from_slice(&5000u32.to_le_bytes());
        let end = unordered.len() - 4;
        let crc = crc32c::crc32c(&unordered[..end]);
        unordered[end..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            decode_delta(&unordered, 5),
            Err(FormatError::Entry { index: 1, .. })
        ));
    }
}
