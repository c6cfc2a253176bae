//! Checks for the names that end up in the kernel or in a child's environment: host names,
//! interface names, service names and environment variable names. Each returns why a name
//! is refused, for the error message.

/// A host name as `sethostname(2)` and resolvers accept: dot-separated labels of letters,
/// digits and `-` (RFC 1123), at most 64 bytes (the kernel's `__NEW_UTS_LEN`).
pub fn check_hostname(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > 64 {
        return Err("longer than 64 bytes");
    }
    for label in s.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots, or a dot at an end)");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 bytes");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with '-'");
        }
    }
    Ok(())
}

/// A network interface name as the kernel accepts it (`dev_valid_name()`): 1 to 15 bytes,
/// no `/`, `:` or whitespace, not `.` or `..`.
pub fn check_ifname(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > 15 {
        return Err("longer than 15 bytes (IFNAMSIZ)");
    }
    if s == "." || s == ".." {
        return Err("'.' and '..' are not interface names");
    }
    if s.bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
    {
        return Err("contains '/', ':', whitespace or NUL");
    }
    Ok(())
}

/// A service name: it prefixes console lines and keys the health JSON, so keep it plain.
pub fn check_service_name(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > 64 {
        return Err("longer than 64 bytes");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
    {
        return Err("only letters, digits, '-', '_', '.' and '@' are allowed");
    }
    Ok(())
}

/// An environment variable name that `execve` can carry: not empty, no `=` or NUL.
pub fn check_env_name(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty variable name");
    }
    if s.contains('=') || s.contains('\0') {
        return Err("a variable name cannot contain '=' or NUL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        for ok in ["web1", "a-b.example.com", "x", &"a".repeat(63)] {
            assert!(check_hostname(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "-a",
            "a-",
            "a_b",
            "a b",
            "undefined!",
            &"a".repeat(65),
        ] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ifnames() {
        for ok in ["eth0", "enp0s3", "veth-a.100"] {
            assert!(check_ifname(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "abcdefghijklmnop"] {
            assert!(check_ifname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn service_and_env_names() {
        assert!(check_service_name("oauth-agent@1").is_ok());
        assert!(check_service_name("a b").is_err());
        assert!(check_service_name("").is_err());
        assert!(check_env_name("PATH").is_ok());
        assert!(check_env_name("A=B").is_err());
        assert!(check_env_name("").is_err());
    }
}
