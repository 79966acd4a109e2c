//! Reading one received part as a DICOM file (PS3.10): the preamble, the file meta group and
//! the data set up to Pixel Data, with dicom-rs. The bytes stay as received, except the
//! preamble, which is zeroed as Azure does (a preamble can carry an executable or a TIFF
//! header; PS3.10 7.5 lets a receiver disregard it).

use std::io::Read;

use bytes::{Bytes, BytesMut};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{InMemDicomObject, OpenFileOptions};

use crate::dicomweb::multipart::Part;

const PREAMBLE: usize = 128;

/// A part that is a readable DICOM file.
pub struct Received {
    /// The data set up to (not including) Pixel Data.
    pub dataset: InMemDicomObject,
    pub transfer_syntax_uid: String,
    /// What is stored: the received bytes with the preamble zeroed.
    pub bytes: Vec<Bytes>,
    pub len: usize,
}

/// Reads the part, or says why it is not a DICOM file.
/// Where the file meta group starts, and whether the file has a preamble: writers such as
/// pydicom (and so dicomweb-client) send files without preamble and "DICM" prefix, starting
/// right at the meta group (0002,xxxx), which Azure accepts too.
fn meta_start(chunks: &[Bytes]) -> Result<(bool, usize), String> {
    let head = prefix(chunks, PREAMBLE + 4);
    if head.len() >= PREAMBLE + 4 && &head[PREAMBLE..] == b"DICM" {
        Ok((true, PREAMBLE + 4))
    } else if head.starts_with(b"DICM") {
        Ok((false, 4))
    } else if head.starts_with(&[0x02, 0x00]) && head.get(3) == Some(&0x00) {
        Ok((false, 0))
    } else {
        Err("the part is not a DICOM file (no file meta information)".into())
    }
}

/// A stored instance read whole, pixel data included (for transcoding, frames, rendering).
pub fn open(bytes: Bytes) -> Result<dicom_object::DefaultDicomObject, String> {
    let chunks = [bytes];
    let (_, meta_start) = meta_start(&chunks)?;
    let supplied = meta_prefix(&chunks, meta_start)?;
    OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .from_reader(
            supplied
                .as_slice()
                .chain(ChunkReader::new(&chunks, meta_start)),
        )
        .map_err(|e| e.to_string())
}

pub fn read(part: Part) -> Result<Received, String> {
    let (has_preamble, meta_start) = meta_start(&part.chunks)?;
    let supplied = meta_prefix(&part.chunks, meta_start)?;
    let file = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .read_until(tags::PIXEL_DATA)
        .from_reader(
            supplied
                .as_slice()
                .chain(ChunkReader::new(&part.chunks, meta_start)),
        )
        .map_err(|e| e.to_string())?;
    let transfer_syntax_uid = file
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_owned();
    let bytes = if has_preamble {
        zero_preamble(part.chunks)
    } else {
        part.chunks
    };
    Ok(Received {
        dataset: file.into_inner(),
        transfer_syntax_uid,
        bytes,
        len: part.len,
    })
}

/// What dicom-rs is to read before the meta group at `meta_start`: the "DICM" prefix, and a
/// FileMetaInformationGroupLength (0002,0000) element if the file has none. dicom-rs reads the
/// meta group by that length, while some writers leave it out, and with it often the preamble
/// and prefix (pydicom for a data set made in memory, and so dicomweb-client); Azure accepts
/// such files. This scans the group's explicit VR little endian element headers; it does not
/// parse values.
fn meta_prefix(chunks: &[Bytes], meta_start: usize) -> Result<Vec<u8>, String> {
    // A meta group is small; 64 KiB holds any real one.
    let head = prefix(chunks, meta_start + 64 * 1024);
    let head = &head[meta_start.min(head.len())..];
    let mut supplied = b"DICM".to_vec();
    if head.starts_with(&[0x02, 0x00, 0x00, 0x00]) {
        return Ok(supplied);
    }
    let mut at = 0;
    while head.len() >= at + 8 && head[at..at + 2] == [0x02, 0x00] {
        let long = matches!(
            &head[at + 4..at + 6],
            b"OB"
                | b"OD"
                | b"OF"
                | b"OL"
                | b"OV"
                | b"OW"
                | b"SQ"
                | b"SV"
                | b"UC"
                | b"UN"
                | b"UR"
                | b"UT"
                | b"UV"
        );
        let (header, len) = if long {
            let b = head
                .get(at + 8..at + 12)
                .ok_or("the file meta group is truncated")?;
            (12, u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        } else {
            (8, u16::from_le_bytes([head[at + 6], head[at + 7]]) as usize)
        };
        at += header + len;
    }
    let length = u32::try_from(at).map_err(|_| "the file meta group is too long")?;
    supplied.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 0x04, 0x00]);
    supplied.extend_from_slice(&length.to_le_bytes());
    Ok(supplied)
}

/// The first `n` bytes (or fewer if there are fewer).
fn prefix(chunks: &[Bytes], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    for c in chunks {
        let take = (n - out.len()).min(c.len());
        out.extend_from_slice(&c[..take]);
        if out.len() == n {
            break;
        }
    }
    out
}

/// The chunks with their first 128 bytes replaced by zeros.
fn zero_preamble(chunks: Vec<Bytes>) -> Vec<Bytes> {
    let mut out = vec![BytesMut::zeroed(PREAMBLE).freeze()];
    let mut skip = PREAMBLE;
    for c in chunks {
        if skip >= c.len() {
            skip -= c.len();
            continue;
        }
        out.push(c.slice(skip..));
        skip = 0;
    }
    out
}

/// `Read` over received chunks from an offset, without joining them.
struct ChunkReader<'a> {
    chunks: &'a [Bytes],
    index: usize,
    offset: usize,
}

impl<'a> ChunkReader<'a> {
    fn new(chunks: &'a [Bytes], mut skip: usize) -> Self {
        let mut index = 0;
        while index < chunks.len() && skip >= chunks[index].len() {
            skip -= chunks[index].len();
            index += 1;
        }
        Self {
            chunks,
            index,
            offset: skip,
        }
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(chunk) = self.chunks.get(self.index) {
            let rest = &chunk[self.offset..];
            if rest.is_empty() {
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.offset += n;
            return Ok(n);
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preamble_is_zeroed_across_chunk_boundaries() {
        let data: Vec<u8> = (0..300).map(|i| (i % 251) as u8 + 1).collect();
        let chunks = vec![
            Bytes::copy_from_slice(&data[..50]),
            Bytes::copy_from_slice(&data[50..200]),
            Bytes::copy_from_slice(&data[200..]),
        ];
        let out: Vec<u8> = zero_preamble(chunks).concat();
        assert_eq!(out.len(), 300);
        assert!(out[..128].iter().all(|b| *b == 0));
        assert_eq!(&out[128..], &data[128..]);
    }

    #[test]
    fn the_reader_starts_at_an_offset_inside_a_later_chunk() {
        let chunks = vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defgh")];
        let mut s = String::new();
        ChunkReader::new(&chunks, 4).read_to_string(&mut s).unwrap();
        assert_eq!(s, "efgh");
    }
}
