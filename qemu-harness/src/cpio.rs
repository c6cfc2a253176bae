//! A writer for the cpio "newc" format (`070701`), the only archive format
//! the kernel unpacks as an initramfs. Entries are written in the order
//! given; the caller puts parents before children. Timestamps are 0 and
//! owners root so that the same inputs give the same bytes.

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    /// A character device (major, minor), e.g. `/dev/console` (5, 1).
    CharDev(u32, u32),
    /// A named pipe: what a hostile image or host hands PID 1 as a "file" to block its read.
    Fifo,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFIFO: u32 = 0o010000;

/// Serialises `(path, permission bits, node)` entries plus the trailer.
/// Paths are relative (no leading `/`), as the kernel expects.
pub fn write<'a>(entries: impl IntoIterator<Item = (&'a str, u32, &'a Node)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (ino, (path, perm, node)) in (1u32..).zip(entries) {
        let (kind, data, dev): (u32, &[u8], (u32, u32)) = match node {
            Node::Dir => (S_IFDIR, &[], (0, 0)),
            Node::File(bytes) => (S_IFREG, bytes, (0, 0)),
            Node::Symlink(target) => (S_IFLNK, target.as_bytes(), (0, 0)),
            Node::CharDev(maj, min) => (S_IFCHR, &[], (*maj, *min)),
            Node::Fifo => (S_IFIFO, &[], (0, 0)),
        };
        let nlink = if kind == S_IFDIR { 2 } else { 1 };
        entry(
            &mut out,
            ino,
            kind | (perm & 0o7777),
            nlink,
            dev,
            path,
            data,
        );
    }
    entry(&mut out, 0, 0, 1, (0, 0), "TRAILER!!!", &[]);
    out
}

fn entry(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    name: &str,
    data: &[u8],
) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        u32::try_from(data.len()).unwrap_or(u32::MAX),
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        u32::try_from(name.len() + 1).unwrap_or(u32::MAX),
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() & 3 != 0 {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_and_alignment() {
        let file = Node::File(b"hello".to_vec());
        let bytes = write([("init", 0o755, &file)]);
        assert_eq!(&bytes[..6], b"070701");
        let mode = u32::from_str_radix(std::str::from_utf8(&bytes[14..22]).unwrap(), 16).unwrap();
        assert_eq!(mode, S_IFREG | 0o755);
        let size = u32::from_str_radix(std::str::from_utf8(&bytes[54..62]).unwrap(), 16).unwrap();
        assert_eq!(size, 5);
        // 110-byte header + "init\0" = 115, padded to 116; data at 116.
        assert_eq!(&bytes[110..115], b"init\0");
        assert_eq!(&bytes[116..121], b"hello");
        assert_eq!(bytes.len() % 4, 0);
        let trailer = bytes.windows(10).position(|w| w == b"TRAILER!!!");
        assert!(trailer.is_some());
    }

    #[test]
    fn a_fifo_is_its_mode_and_nothing_else() {
        let fifo = Node::Fifo;
        let bytes = write([("etc/pipe", 0o644, &fifo)]);
        let field = |i: usize| {
            let at = 6 + i * 8;
            u32::from_str_radix(std::str::from_utf8(&bytes[at..at + 8]).unwrap(), 16).unwrap()
        };
        assert_eq!(field(1), S_IFIFO | 0o644);
        assert_eq!(field(6), 0, "no data");
        assert_eq!((field(9), field(10)), (0, 0), "no device");
    }

    #[test]
    fn device_numbers_go_in_rdev() {
        let dev = Node::CharDev(5, 1);
        let bytes = write([("dev/console", 0o600, &dev)]);
        let field = |i: usize| {
            let at = 6 + i * 8;
            u32::from_str_radix(std::str::from_utf8(&bytes[at..at + 8]).unwrap(), 16).unwrap()
        };
        assert_eq!(field(1), S_IFCHR | 0o600);
        assert_eq!((field(9), field(10)), (5, 1));
    }
}
