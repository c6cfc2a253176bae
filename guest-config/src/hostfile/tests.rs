use std::time::{Duration, Instant};

use super::*;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn a_regular_file_is_read() {
    let d = dir();
    let p = d.path().join("vminit.toml");
    std::fs::write(&p, "hostname = \"vm\"\n").unwrap();
    assert_eq!(
        read_host_file(&p, MAX_HOST_FILE).unwrap(),
        "hostname = \"vm\"\n"
    );
    // exactly at the limit is still read
    std::fs::write(&p, "x".repeat(16)).unwrap();
    assert_eq!(read_host_file(&p, 16).unwrap().len(), 16);
}

#[test]
fn a_large_sparse_file_is_refused_by_size_without_reading_it() {
    let d = dir();
    let p = d.path().join("vminit.toml");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(64 * 1024 * 1024).unwrap();
    let e = read_host_file(&p, MAX_HOST_FILE).unwrap_err();
    assert!(matches!(e, HostFileError::TooBig { size, at_least: false, .. } if size == 64 << 20));
    assert_eq!(
        e.to_string(),
        format!("{}: is 64 MiB, over the 1 MiB limit; not read", p.display())
    );
    std::fs::write(&p, "x".repeat(17)).unwrap();
    let e = read_host_file(&p, 16).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("is 17 bytes, over the 16 bytes limit; not read"),
        "{e}"
    );
}

#[test]
fn a_fifo_is_refused_at_once() {
    let d = dir();
    let p = d.path().join("vminit.toml");
    rustix::fs::mknodat(CWD, &p, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).unwrap();
    let start = Instant::now();
    let e = read_host_file(&p, MAX_HOST_FILE).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(
            e,
            HostFileError::NotRegular {
                kind: FileKind::Fifo,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("is a FIFO"), "{e}");
    // the image path follows symlinks but refuses a FIFO all the same
    assert!(matches!(
        read_image_file(&p, MAX_HOST_FILE),
        Err(HostFileError::NotRegular {
            kind: FileKind::Fifo,
            ..
        })
    ));
}

#[test]
fn a_symlink_to_dev_zero_is_named_and_not_followed() {
    let d = dir();
    let p = d.path().join("vminit.toml");
    std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
    let e = read_host_file(&p, MAX_HOST_FILE).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: is a symlink to /dev/zero; host files are not followed, put the file itself there",
            p.display()
        )
    );
    // followed (image config), the target is still checked by type: no endless read
    let e = read_image_file(&p, MAX_HOST_FILE).unwrap_err();
    assert!(
        matches!(
            e,
            HostFileError::NotRegular {
                kind: FileKind::CharDevice,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn the_image_path_follows_a_symlink_to_a_regular_file() {
    let d = dir();
    let real = d.path().join("real.toml");
    let link = d.path().join("vminit.toml");
    std::fs::write(&real, "log = \"info\"\n").unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert_eq!(
        read_image_file(&link, MAX_HOST_FILE).unwrap(),
        "log = \"info\"\n"
    );
    assert!(matches!(
        read_host_file(&link, MAX_HOST_FILE),
        Err(HostFileError::Symlink { target: Some(t), .. }) if t == real
    ));
}

#[test]
fn dev_null_is_a_character_device() {
    let e = read_host_file(Path::new("/dev/null"), MAX_HOST_FILE).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/dev/null: is a character device, not a regular file; not read"
    );
}

#[test]
fn a_directory_is_refused() {
    let d = dir();
    let e = read_host_file(d.path(), MAX_HOST_FILE).unwrap_err();
    assert!(e.to_string().contains("is a directory"), "{e}");
}

#[test]
fn bytes_that_are_not_utf8_are_located() {
    let d = dir();
    let p = d.path().join("vminit.toml");
    std::fs::write(&p, b"abc\xffdef").unwrap();
    let e = read_host_file(&p, MAX_HOST_FILE).unwrap_err();
    assert!(matches!(e, HostFileError::NotUtf8 { byte: 3, .. }), "{e:?}");
    assert!(e.to_string().ends_with("is not UTF-8 (byte 3)"), "{e}");
}

#[test]
fn a_missing_file_names_the_syscall() {
    let e = read_host_file(Path::new("/nonexistent/vminit.toml"), MAX_HOST_FILE).unwrap_err();
    assert!(
        matches!(
            e,
            HostFileError::Io {
                syscall: "stat",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("/nonexistent/vminit.toml: stat failed: "),
        "{e}"
    );
}

#[test]
fn a_file_that_lies_about_its_size_is_still_bounded() {
    // procfs files report size 0 but have content: the bounded read catches them
    let p = Path::new("/proc/self/status");
    let e = read_host_file(p, 8).unwrap_err();
    assert!(
        matches!(e, HostFileError::TooBig { at_least: true, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("is more than 8 bytes"), "{e}");
}

#[test]
fn the_open_itself_never_blocks_on_a_fifo_nor_follows_a_symlink() {
    // Past the lstat (a FIFO or link swapped in between): O_NONBLOCK opens a FIFO with no
    // writer at once, fstat refuses it; O_NOFOLLOW fails with ELOOP, named as a symlink.
    let d = dir();
    let fifo = d.path().join("fifo");
    rustix::fs::mknodat(CWD, &fifo, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0).unwrap();
    let start = Instant::now();
    let e = open_and_read(&fifo, MAX_HOST_FILE, false).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(
            e,
            HostFileError::NotRegular {
                kind: FileKind::Fifo,
                ..
            }
        ),
        "{e:?}"
    );
    let link = d.path().join("link");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let e = open_and_read(&link, MAX_HOST_FILE, false).unwrap_err();
    assert!(
        matches!(e, HostFileError::Symlink { target: Some(t), .. } if t == Path::new("/dev/zero"))
    );
    let e = open_and_read(&link, MAX_HOST_FILE, true).unwrap_err();
    assert!(
        matches!(
            e,
            HostFileError::NotRegular {
                kind: FileKind::CharDevice,
                ..
            }
        ),
        "{e:?}"
    );
}
