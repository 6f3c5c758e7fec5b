//! A strict walk of a zip archive's structure, so that what Kiln checks is exactly what
//! every installer extracts.
//!
//! Zip readers disagree on malformed archives: Python's `zipfile` (pip) trusts the central
//! directory, streaming extractors trust the local headers, and readers differ on which
//! end record, which of two same-named members, and which of two zip64 counts they
//! believe. An archive on which they can disagree is a way to show Kiln one METADATA and
//! install another. So an archive is accepted only when every reading agrees:
//!
//! - exactly one end-of-central-directory record, ending the file (its comment holds no
//!   other record signature);
//! - zip64 records, when present, consistent with the classic end record;
//! - the central directory walked entry by entry (its count is never trusted: the 16-bit
//!   count wraps), ending exactly where the end records begin, with as many entries as
//!   declared;
//! - each entry's local header carries the same name (and, without a data descriptor, the
//!   same sizes) as its central entry;
//! - the entries' local records tile the file from offset 0 up to the central directory:
//!   no data before the first, between two, or after the last; no two entries share or
//!   overlap a record.
//!
//! Each refusal names the member it concerns.

use std::io::{Read, Seek, SeekFrom};

const EOCD: [u8; 4] = *b"PK\x05\x06";
const ZIP64_EOCD: [u8; 4] = *b"PK\x06\x06";
const ZIP64_LOCATOR: [u8; 4] = *b"PK\x06\x07";
const CENTRAL: [u8; 4] = *b"PK\x01\x02";
const LOCAL: [u8; 4] = *b"PK\x03\x04";
const DESCRIPTOR: [u8; 4] = *b"PK\x07\x08";
const EOCD_LEN: u64 = 22;
const LOCATOR_LEN: u64 = 20;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: u64 = 30;
/// The newest "version needed to extract" Python's zipfile reads (6.3).
const MAX_EXTRACT_VERSION: u8 = 63;
const FLAG_ENCRYPTED: u16 = 0x0001;
const FLAG_PATCHED: u16 = 0x0020;
const FLAG_STRONG_ENCRYPTION: u16 = 0x0040;
/// Stored, deflate, bzip2, lzma: what installers unpack.
const KNOWN_METHODS: [u16; 4] = [0, 8, 12, 14];

/// One member, as the central directory and its local header agree it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipMember {
    /// The name's raw bytes.
    pub name: Vec<u8>,
    /// Inflated size.
    pub size: u64,
    /// The Unix mode, when the entry was made on Unix.
    pub unix_mode: Option<u32>,
}

/// Why the structure is refused: the member (or `(end record)`, `(central directory)`)
/// and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipFault {
    /// The member concerned, or a structure in parentheses.
    pub member: String,
    /// What is wrong.
    pub reason: String,
}

/// What stops a walk: a fault in the structure, too many members, or an I/O error.
#[derive(Debug)]
pub enum WalkError {
    /// The structure is refused.
    Fault(ZipFault),
    /// Not a zip archive at all (or a truncated one): no end record ends it.
    NotZip(&'static str),
    /// More members than `max_entries`.
    TooMany,
    /// Reading failed.
    Io(std::io::Error),
}

impl From<std::io::Error> for WalkError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

fn fault(member: &str, reason: impl Into<String>) -> WalkError {
    WalkError::Fault(ZipFault {
        member: member.to_owned(),
        reason: reason.into(),
    })
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(bytes)
}

fn read_at<R: Read + Seek>(r: &mut R, at: u64, len: usize) -> Result<Vec<u8>, WalkError> {
    r.seek(SeekFrom::Start(at))?;
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Where the central directory is and how many entries it declares.
struct Directory {
    offset: u64,
    size: u64,
    entries: u64,
    /// Where the directory must end: the zip64 end record, or the classic one.
    ends_at: u64,
}

/// Finds the one end record that ends the file and the zip64 records it points to.
fn directory<R: Read + Seek>(r: &mut R, len: u64) -> Result<Directory, WalkError> {
    const END: &str = "(end record)";
    if len < EOCD_LEN {
        return Err(WalkError::NotZip(
            "the file is too short to be a zip archive",
        ));
    }
    let tail_len = len.min(EOCD_LEN + u64::from(u16::MAX));
    let tail_start = len - tail_len;
    let tail = read_at(r, tail_start, usize::try_from(tail_len).unwrap_or(0))?;
    let candidates: Vec<usize> = (0..=tail.len() - 22)
        .filter(|&i| tail[i..i + 4] == EOCD)
        .collect();
    let ending: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| i + 22 + usize::from(u16_at(&tail, i + 20)) == tail.len())
        .collect();
    let at = match ending.as_slice() {
        [] => {
            return Err(WalkError::NotZip(
                "no end-of-central-directory record ends the file",
            ));
        }
        [one] => *one,
        _ => return Err(fault(END, "more than one end record ends the file")),
    };
    let comment = &tail[at + 22..];
    if contains(comment, &EOCD)
        || contains(comment, &ZIP64_EOCD)
        || contains(comment, &ZIP64_LOCATOR)
    {
        return Err(fault(END, "the archive comment holds another end record"));
    }
    let eocd = &tail[at..at + 22];
    if u16_at(eocd, 4) != 0 || u16_at(eocd, 6) != 0 {
        return Err(fault(END, "multi-disk archives are not accepted"));
    }
    let here = u16_at(eocd, 8);
    let total = u16_at(eocd, 10);
    let size = u32_at(eocd, 12);
    let offset = u32_at(eocd, 16);
    if here != total {
        return Err(fault(END, "the end record's two entry counts differ"));
    }
    let eocd_at = tail_start + at as u64;
    // A zip64 locator sits right before the classic record.
    let locator = if eocd_at >= LOCATOR_LEN {
        let bytes = read_at(r, eocd_at - LOCATOR_LEN, 20)?;
        (bytes[..4] == ZIP64_LOCATOR).then_some(bytes)
    } else {
        None
    };
    let Some(locator) = locator else {
        if total == u16::MAX || size == u32::MAX || offset == u32::MAX {
            return Err(fault(
                END,
                "the end record needs zip64 records, and there are none",
            ));
        }
        return Ok(Directory {
            offset: u64::from(offset),
            size: u64::from(size),
            entries: u64::from(total),
            ends_at: eocd_at,
        });
    };
    zip64_directory(r, &locator, eocd_at, (total, size, offset))
}

/// The zip64 end record the locator points to, checked against the classic record.
fn zip64_directory<R: Read + Seek>(
    r: &mut R,
    locator: &[u8],
    eocd_at: u64,
    (total, size, offset): (u16, u32, u32),
) -> Result<Directory, WalkError> {
    const END: &str = "(zip64 end record)";
    if u32_at(locator, 4) != 0 || u32_at(locator, 16) > 1 {
        return Err(fault(END, "multi-disk archives are not accepted"));
    }
    let record_at = u64_at(locator, 8);
    if record_at.checked_add(56) != Some(eocd_at - LOCATOR_LEN) {
        return Err(fault(
            END,
            "the zip64 end record is not right before its locator",
        ));
    }
    let record = read_at(r, record_at, 56)?;
    if record[..4] != ZIP64_EOCD || u64_at(&record, 4) != 44 {
        return Err(fault(
            END,
            "the locator does not point at a zip64 end record",
        ));
    }
    if u32_at(&record, 16) != 0 || u32_at(&record, 20) != 0 {
        return Err(fault(END, "multi-disk archives are not accepted"));
    }
    let here = u64_at(&record, 24);
    let entries = u64_at(&record, 32);
    let dir_size = u64_at(&record, 40);
    let dir_offset = u64_at(&record, 48);
    // Every classic field is either the zip64 marker or the same value.
    let consistent = here == entries
        && (total == u16::MAX || u64::from(total) == entries)
        && (size == u32::MAX || u64::from(size) == dir_size)
        && (offset == u32::MAX || u64::from(offset) == dir_offset);
    if !consistent {
        return Err(fault(
            END,
            "the zip64 end record and the classic end record disagree",
        ));
    }
    Ok(Directory {
        offset: dir_offset,
        size: dir_size,
        entries,
        ends_at: record_at,
    })
}

/// A central entry's facts, with zip64 extra fields applied.
struct Central {
    name: Vec<u8>,
    flags: u16,
    method: u16,
    compressed: u64,
    size: u64,
    local_at: u64,
    unix_mode: Option<u32>,
    zip64: bool,
}

fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name)
        .chars()
        .take(200)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

/// Applies the zip64 extended-information extra field (0x0001) to the fields that carry
/// the marker, in the order the specification gives.
fn apply_zip64(extra: &[u8], entry: &mut Central, member: &str) -> Result<(), WalkError> {
    let mut i = 0;
    while i + 4 <= extra.len() {
        let id = u16_at(extra, i);
        let len = usize::from(u16_at(extra, i + 2));
        let Some(body) = extra.get(i + 4..i + 4 + len) else {
            return Err(fault(member, "an extra field runs past its entry"));
        };
        if id == 1 {
            let mut at = 0;
            let mut take = |value: &mut u64| -> Result<(), WalkError> {
                if *value == u64::from(u32::MAX) {
                    let Some(bytes) = body.get(at..at + 8) else {
                        return Err(fault(member, "its zip64 field is too short"));
                    };
                    *value = u64_at(bytes, 0);
                    at += 8;
                }
                Ok(())
            };
            take(&mut entry.size)?;
            take(&mut entry.compressed)?;
            take(&mut entry.local_at)?;
            entry.zip64 = true;
        }
        i += 4 + len;
    }
    if i != extra.len() {
        return Err(fault(member, "its extra fields are malformed"));
    }
    Ok(())
}

fn central_entries<R: Read + Seek>(
    r: &mut R,
    dir: &Directory,
    max_entries: usize,
) -> Result<Vec<Central>, WalkError> {
    const DIR: &str = "(central directory)";
    if dir.offset.checked_add(dir.size) != Some(dir.ends_at) {
        return Err(fault(
            DIR,
            "the central directory does not end where the end records begin",
        ));
    }
    let bytes = read_at(
        r,
        dir.offset,
        usize::try_from(dir.size).map_err(|_| fault(DIR, "too large"))?,
    )?;
    let mut entries = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if entries.len() >= max_entries {
            return Err(WalkError::TooMany);
        }
        let Some(head) = bytes.get(i..i + CENTRAL_LEN) else {
            return Err(fault(DIR, "an entry is cut short"));
        };
        if head[..4] != CENTRAL {
            return Err(fault(
                DIR,
                format!("no entry header at offset {i} of the directory"),
            ));
        }
        let (name_len, extra_len, comment_len) = (
            usize::from(u16_at(head, 28)),
            usize::from(u16_at(head, 30)),
            usize::from(u16_at(head, 32)),
        );
        let record_len = CENTRAL_LEN + name_len + extra_len + comment_len;
        let Some(rest) = bytes.get(i + CENTRAL_LEN..i + record_len) else {
            return Err(fault(
                DIR,
                "an entry's name or fields run past the directory",
            ));
        };
        let name = rest[..name_len].to_vec();
        let member = shown(&name);
        if u16_at(head, 34) != 0 {
            return Err(fault(&member, "it is on another disk"));
        }
        let made_on_unix = head[5] == 3;
        // What an installer cannot read, it cannot install: Python's zipfile refuses a
        // whole archive that needs a later zip version than 6.3, and members that are
        // encrypted, patched or compressed in ways it does not know.
        if head[6] > MAX_EXTRACT_VERSION {
            return Err(fault(
                &member,
                format!(
                    "it needs zip version {}.{} to extract; installers read up to 6.3",
                    head[6] / 10,
                    head[6] % 10
                ),
            ));
        }
        let flags = u16_at(head, 8);
        if flags & (FLAG_ENCRYPTED | FLAG_PATCHED | FLAG_STRONG_ENCRYPTION) != 0 {
            return Err(fault(
                &member,
                "it is encrypted or patched data, which installers cannot unpack",
            ));
        }
        let method = u16_at(head, 10);
        if !KNOWN_METHODS.contains(&method) {
            return Err(fault(
                &member,
                format!("its compression method {method} is not stored, deflate, bzip2 or lzma"),
            ));
        }
        let mut entry = Central {
            flags,
            method,
            compressed: u64::from(u32_at(head, 20)),
            size: u64::from(u32_at(head, 24)),
            local_at: u64::from(u32_at(head, 42)),
            unix_mode: made_on_unix.then(|| u32_at(head, 38) >> 16),
            zip64: false,
            name,
        };
        apply_zip64(&rest[name_len..name_len + extra_len], &mut entry, &member)?;
        entries.push(entry);
        i += record_len;
    }
    if entries.len() as u64 != dir.entries {
        return Err(fault(
            DIR,
            format!(
                "the end record declares {} entries but the directory holds {}",
                dir.entries,
                entries.len()
            ),
        ));
    }
    Ok(entries)
}

/// Where an entry's local record ends (header, data and any data descriptor), after
/// checking the local header against the central entry. `next` is where the following
/// record starts, used to tell the descriptor's form.
fn local_end<R: Read + Seek>(r: &mut R, entry: &Central, next: u64) -> Result<u64, WalkError> {
    let member = shown(&entry.name);
    let head = read_at(r, entry.local_at, 30)
        .map_err(|_| fault(&member, "its local header is past the end of the file"))?;
    if head[..4] != LOCAL {
        return Err(fault(
            &member,
            "its central entry points at no local header",
        ));
    }
    let (n, m) = (u64::from(u16_at(&head, 26)), u64::from(u16_at(&head, 28)));
    let name = read_at(
        r,
        entry.local_at + LOCAL_LEN,
        usize::from(u16_at(&head, 26)),
    )?;
    if name != entry.name {
        return Err(fault(
            &member,
            format!(
                "its local header names it `{}`: readers would disagree on its name",
                shown(&name)
            ),
        ));
    }
    // A streaming extractor believes the local header: it must say what the central
    // directory says.
    if u16_at(&head, 6) != entry.flags || u16_at(&head, 8) != entry.method {
        return Err(fault(
            &member,
            "its local header and central entry give different flags or compression",
        ));
    }
    let descriptor = entry.flags & 0x08 != 0;
    let (local_compressed, local_size) = (u32_at(&head, 18), u32_at(&head, 22));
    if !descriptor {
        let agrees = |local: u32, central: u64| {
            local == u32::MAX && entry.zip64 || u64::from(local) == central
        };
        if !agrees(local_compressed, entry.compressed) || !agrees(local_size, entry.size) {
            return Err(fault(
                &member,
                "its local header and central entry give different sizes",
            ));
        }
    }
    let data_end = entry
        .local_at
        .checked_add(LOCAL_LEN + n + m)
        .and_then(|v| v.checked_add(entry.compressed))
        .ok_or_else(|| fault(&member, "its sizes overflow"))?;
    if !descriptor {
        return Ok(data_end);
    }
    // A data descriptor: optional signature, CRC, then 4- or 8-byte sizes.
    let signed = read_at(r, data_end, 4).is_ok_and(|s| s == DESCRIPTOR);
    let base = if signed { 4 } else { 0 };
    [12, 20]
        .into_iter()
        .map(|len| data_end + base + len)
        .find(|&end| end == next)
        .ok_or_else(|| {
            fault(
                &member,
                "its data descriptor does not end where the next record starts",
            )
        })
}

/// Walks the archive (see the module documentation); answers its members in central
/// directory order.
pub fn walk<R: Read + Seek>(r: &mut R, max_entries: usize) -> Result<Vec<ZipMember>, WalkError> {
    let len = r.seek(SeekFrom::End(0))?;
    let dir = directory(r, len)?;
    let entries = central_entries(r, &dir, max_entries)?;
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| entries[i].local_at);
    let mut expected = 0u64;
    for (k, &i) in order.iter().enumerate() {
        let entry = &entries[i];
        let member = shown(&entry.name);
        if entry.local_at != expected {
            return Err(fault(
                &member,
                if entry.local_at < expected {
                    "its local record overlaps another member's (or shares its header)"
                } else if k == 0 {
                    "there is data before the first member"
                } else {
                    "there is hidden data between members"
                },
            ));
        }
        let next = order
            .get(k + 1)
            .map_or(dir.offset, |&j| entries[j].local_at);
        expected = local_end(r, entry, next)?;
    }
    if expected != dir.offset {
        return Err(fault(
            "(central directory)",
            if expected > dir.offset {
                "the last member runs into the central directory"
            } else {
                "there is hidden data between the last member and the central directory"
            },
        ));
    }
    r.seek(SeekFrom::Start(0))?;
    Ok(entries
        .into_iter()
        .map(|e| ZipMember {
            name: e.name,
            size: e.size,
            unix_mode: e.unix_mode,
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// One member of a hand-made archive: the central name, the local header's name and
    /// the stored bytes.
    pub(crate) struct Raw<'a> {
        pub central: &'a [u8],
        pub local: &'a [u8],
        pub data: &'a [u8],
    }

    impl<'a> Raw<'a> {
        pub(crate) fn new(name: &'a str, data: &'a [u8]) -> Self {
            Self {
                central: name.as_bytes(),
                local: name.as_bytes(),
                data,
            }
        }
    }

    /// How to lay a hand-made archive out.
    #[derive(Default)]
    pub(crate) struct Layout<'a> {
        pub prefix: &'a [u8],
        pub gap: &'a [u8],
        pub comment: &'a [u8],
        /// Points every central entry after the first at the first local header.
        pub share_first_header: bool,
        /// Overrides the end record's entry count.
        pub declared: Option<u16>,
    }

    /// A stored (uncompressed) zip, laid out as asked; offsets are right unless the
    /// layout says otherwise.
    pub(crate) fn raw_zip(members: &[Raw<'_>], layout: &Layout<'_>) -> Vec<u8> {
        let mut out = layout.prefix.to_vec();
        let mut offsets = Vec::new();
        for (i, m) in members.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(layout.gap);
            }
            offsets.push(u32::try_from(out.len()).unwrap());
            out.extend_from_slice(&LOCAL);
            out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            let size = u32::try_from(m.data.len()).unwrap();
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&u16::try_from(m.local.len()).unwrap().to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(m.local);
            out.extend_from_slice(m.data);
        }
        let dir_at = u32::try_from(out.len()).unwrap();
        for (i, m) in members.iter().enumerate() {
            out.extend_from_slice(&CENTRAL);
            out.extend_from_slice(&[20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            let size = u32::try_from(m.data.len()).unwrap();
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&u16::try_from(m.central.len()).unwrap().to_le_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&(0o100_644u32 << 16).to_le_bytes());
            let at = if layout.share_first_header {
                offsets[0]
            } else {
                offsets[i]
            };
            out.extend_from_slice(&at.to_le_bytes());
            out.extend_from_slice(m.central);
        }
        let dir_size = u32::try_from(out.len()).unwrap() - dir_at;
        let count = layout
            .declared
            .unwrap_or_else(|| u16::try_from(members.len()).unwrap());
        out.extend_from_slice(&EOCD);
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&dir_size.to_le_bytes());
        out.extend_from_slice(&dir_at.to_le_bytes());
        out.extend_from_slice(&u16::try_from(layout.comment.len()).unwrap().to_le_bytes());
        out.extend_from_slice(layout.comment);
        out
    }

    fn refusal(bytes: &[u8]) -> String {
        match walk(&mut Cursor::new(bytes), 1000) {
            Ok(members) => panic!("accepted: {members:?}"),
            Err(WalkError::Fault(f)) => format!("{}: {}", f.member, f.reason),
            Err(WalkError::TooMany) => "too many".into(),
            Err(WalkError::NotZip(why)) => format!("not a zip: {why}"),
            Err(WalkError::Io(e)) => format!("io: {e}"),
        }
    }

    const META: &str = "demo-1.0.dist-info/METADATA";

    #[test]
    fn plain_archives_are_walked_in_full() {
        let members = [
            Raw::new("demo/__init__.py", b"x = 1\n"),
            Raw::new(META, b"Name: demo\n"),
        ];
        let bytes = raw_zip(&members, &Layout::default());
        let walked = walk(&mut Cursor::new(&bytes), 10).unwrap();
        assert_eq!(walked.len(), 2);
        assert_eq!(walked[1].name, META.as_bytes());
        assert_eq!(walked[0].unix_mode, Some(0o100_644));
        let empty = raw_zip(&[], &Layout::default());
        assert!(walk(&mut Cursor::new(&empty), 10).unwrap().is_empty());
    }

    #[test]
    fn archives_written_by_the_zip_crate_are_accepted() {
        use std::io::Write as _;
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, method) in [
            ("a/stored.txt", zip::CompressionMethod::Stored),
            ("a/deflated.txt", zip::CompressionMethod::Deflated),
        ] {
            let options = zip::write::SimpleFileOptions::default().compression_method(method);
            writer.start_file(name, options).unwrap();
            writer.write_all(&b"hello ".repeat(100)).unwrap();
        }
        let big = zip::write::SimpleFileOptions::default().large_file(true);
        writer.start_file("a/zip64.txt", big).unwrap();
        writer.write_all(b"small but zip64").unwrap();
        writer.set_comment("built by a test");
        let bytes = writer.finish().unwrap().into_inner();
        let walked = walk(&mut Cursor::new(&bytes), 10).unwrap();
        assert_eq!(walked.len(), 3);
    }

    #[test]
    fn a_member_hidden_from_the_central_directory_is_refused() {
        // The local record of a second METADATA sits between two listed members: a
        // streaming extractor unpacks it, the central directory does not list it.
        let mut bytes = raw_zip(&[Raw::new(META, b"Name: demo\n")], &Layout::default());
        let hidden = raw_zip(&[Raw::new(META, b"Name: evil\n")], &Layout::default());
        let dir_at = bytes.windows(4).position(|w| w == CENTRAL).unwrap();
        let local_len = hidden.windows(4).position(|w| w == CENTRAL).unwrap();
        bytes.splice(dir_at..dir_at, hidden[..local_len].iter().copied());
        // Move the directory offset past the hidden record.
        let eocd = bytes.len() - 22;
        let moved = u32::try_from(dir_at + local_len).unwrap();
        bytes[eocd + 16..eocd + 20].copy_from_slice(&moved.to_le_bytes());
        assert!(
            refusal(&bytes).contains("hidden data"),
            "{}",
            refusal(&bytes)
        );
    }

    #[test]
    fn every_disagreement_between_readers_is_refused_with_its_member() {
        let two = [Raw::new("a.txt", b"one"), Raw::new(META, b"Name: demo\n")];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                raw_zip(
                    &two,
                    &Layout {
                        prefix: b"junk",
                        ..Layout::default()
                    },
                ),
                "data before the first member",
            ),
            (
                raw_zip(
                    &two,
                    &Layout {
                        gap: b"hidden",
                        ..Layout::default()
                    },
                ),
                "hidden data between members",
            ),
            (
                raw_zip(
                    &two,
                    &Layout {
                        share_first_header: true,
                        ..Layout::default()
                    },
                ),
                "overlaps",
            ),
            (
                raw_zip(
                    &[Raw {
                        central: META.as_bytes(),
                        local: b"demo-1.0.dist-info/METADATX",
                        data: b"x",
                    }],
                    &Layout::default(),
                ),
                "its local header names it",
            ),
            (
                raw_zip(
                    &two,
                    &Layout {
                        comment: b"PK\x05\x06 a second end record",
                        ..Layout::default()
                    },
                ),
                "comment holds another end record",
            ),
            (
                raw_zip(
                    &two,
                    &Layout {
                        declared: Some(1),
                        ..Layout::default()
                    },
                ),
                "declares 1 entries but the directory holds 2",
            ),
        ];
        for (bytes, expected) in cases {
            let said = refusal(&bytes);
            assert!(said.contains(expected), "{said}");
        }
        let mut trailing = raw_zip(&two, &Layout::default());
        trailing.extend_from_slice(b"trailing");
        assert!(refusal(&trailing).contains("no end-of-central-directory record"));
    }

    #[test]
    fn a_wrapping_entry_count_does_not_hide_members() {
        let names: Vec<String> = (0..1001).map(|i| format!("m/{i}")).collect();
        let members: Vec<Raw<'_>> = names.iter().map(|n| Raw::new(n, b"")).collect();
        // 1001 entries declared as 1001 mod 1000 would be: the walk counts for itself.
        let bytes = raw_zip(
            &members,
            &Layout {
                declared: Some(1),
                ..Layout::default()
            },
        );
        assert_eq!(refusal(&bytes), "too many");
    }
}
