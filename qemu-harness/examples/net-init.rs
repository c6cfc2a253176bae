//! `net-init`: a throwaway static PID 1 that proves the harness's network
//! path (virtio modules, slirp, `hostfwd`, health polling) without vminit.
//! It loads every module under `/lib/modules`, gives `eth0` 10.0.2.15/24,
//! and answers every HTTP request on port 8900 with `{"status":"ok"}`.
//! Build: `cargo build --release --target x86_64-unknown-linux-musl
//! -p qemu-harness --example net-init`. Not part of the product.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

fn say(msg: &str) {
    let line = format!("net-init: {msg}\n");
    // SAFETY: writes a live buffer to fd 1 (the console the kernel opened).
    unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
}

fn modules(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            modules(&p, out);
        } else if p.extension().is_some_and(|x| x == "ko") {
            out.push(p);
        }
    }
}

fn load_all() {
    let mut todo = Vec::new();
    modules(Path::new("/lib/modules"), &mut todo);
    // Dependencies first, without reading modules.dep: retry until no progress.
    loop {
        let before = todo.len();
        todo.retain(|p| {
            let Ok(f) = std::fs::File::open(p) else {
                return false;
            };
            use std::os::fd::AsRawFd;
            // SAFETY: finit_module on an open fd with an empty NUL-terminated param string.
            let rc =
                unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), c"".as_ptr(), 0) };
            let err = std::io::Error::last_os_error().raw_os_error();
            !(rc == 0 || err == Some(libc::EEXIST))
        });
        if todo.is_empty() || todo.len() == before {
            break;
        }
    }
    say(&format!("{} modules not loaded", todo.len()));
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    req
}

fn set_addr(fd: i32, request: libc::c_ulong, ip: [u8; 4]) -> i32 {
    let mut req = ifreq("eth0");
    // SAFETY: writes a sockaddr_in into the ifreq union, which is large enough.
    unsafe {
        let sin = &mut req.ifr_ifru.ifru_addr as *mut libc::sockaddr as *mut libc::sockaddr_in;
        (*sin).sin_family = libc::AF_INET as u16;
        (*sin).sin_addr.s_addr = u32::from_ne_bytes(ip);
        libc::ioctl(fd, request as _, &req)
    }
}

fn eth0_up() -> bool {
    // SAFETY: plain socket(2) call; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    for _ in 0..500 {
        if Path::new("/sys/class/net/eth0").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let a = set_addr(fd, libc::SIOCSIFADDR, [10, 0, 2, 15]);
    let m = set_addr(fd, libc::SIOCSIFNETMASK, [255, 255, 255, 0]);
    let mut req = ifreq("eth0");
    req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as i16;
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    let u = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req) };
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    a == 0 && m == 0 && u == 0
}

fn main() {
    std::fs::create_dir_all("/sys").ok();
    // SAFETY: literal strings; mounting sysfs so /sys/class/net can be polled.
    unsafe {
        libc::mount(
            c"sysfs".as_ptr(),
            c"/sys".as_ptr(),
            c"sysfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    load_all();
    say(&format!("eth0 up: {}", eth0_up()));
    let Ok(listener) = TcpListener::bind("0.0.0.0:8900") else {
        say("bind failed");
        loop {
            std::thread::park();
        }
    };
    say("listening on 8900");
    for stream in listener.incoming().flatten() {
        let mut s = stream;
        let mut buf = [0u8; 2048];
        let _ = s.read(&mut buf);
        let body = r#"{"status":"ok","services":{}}"#;
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(reply.as_bytes());
    }
    loop {
        std::thread::park();
    }
}
