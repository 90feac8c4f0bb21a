//! Devices controller for cgroup v2: the spec's device rules (plus the default devices)
//! compiled to a `BPF_PROG_TYPE_CGROUP_DEVICE` program and attached to the cgroup.
//!
//! The program reads `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
//! (`access_type` = access << 16 | type) and returns 1 (allow) or 0 (deny). Rules are tried
//! from the last to the first and the first match decides, which gives v1's "later rules
//! override earlier ones"; no match denies.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;

/// One rule in the program's terms; `None` is a wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// 1 block, 2 char; `None` for all.
    pub typ: Option<u32>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Bits: 1 mknod, 2 read, 4 write.
    pub access: u32,
    pub allow: bool,
}

const ACC_ALL: u32 = 1 | 2 | 4;

/// Pure: an OCI rule in the program's terms (`None` for types the hook never sees).
pub fn rule_of(d: &LinuxDeviceCgroup) -> Option<Rule> {
    let typ = match d.typ() {
        Some(LinuxDeviceType::A) | None => None,
        Some(LinuxDeviceType::B) => Some(1),
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => Some(2),
        Some(LinuxDeviceType::P) => return None,
    };
    let access = match d.access().as_deref() {
        None | Some("") => ACC_ALL,
        Some(a) => a.chars().fold(0, |acc, c| {
            acc | match c {
                'm' => 1,
                'r' => 2,
                'w' => 4,
                _ => 0,
            }
        }),
    };
    let num = |n: Option<i64>| n.filter(|v| *v >= 0).map(|v| v as u32);
    Some(Rule {
        typ,
        major: num(d.major()),
        minor: num(d.minor()),
        access,
        allow: d.allow(),
    })
}

/// Pure: the v1-style default allow lines as rules.
pub fn default_rules() -> Vec<Rule> {
    super::devices::DEFAULT_ALLOWED
        .iter()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let typ = match it.next()? {
                "b" => Some(1),
                "c" => Some(2),
                _ => None,
            };
            let (ma, mi) = it.next()?.split_once(':')?;
            let access = it.next()?.chars().fold(0, |a, c| {
                a | match c {
                    'm' => 1,
                    'r' => 2,
                    'w' => 4,
                    _ => 0,
                }
            });
            Some(Rule {
                typ,
                major: ma.parse().ok(),
                minor: mi.parse().ok(),
                access,
                allow: true,
            })
        })
        .collect()
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst | (src << 4)) << 8)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}

const LDXW: u8 = 0x61; // dst = *(u32 *)(src + off)
const MOV32_X: u8 = 0xbc;
const MOV64_K: u8 = 0xb7;
const AND32_K: u8 = 0x54;
const RSH32_K: u8 = 0x74;
const JNE_K: u8 = 0x55;
const JNE_X: u8 = 0x5d;
const EXIT: u8 = 0x95;

/// Pure: the program for `rules` (in spec order).
pub fn program(rules: &[Rule]) -> Vec<u64> {
    // r2 = type, r3 = access, r4 = major, r5 = minor
    let mut p = vec![
        insn(LDXW, 2, 1, 0, 0),
        insn(AND32_K, 2, 0, 0, 0xffff),
        insn(LDXW, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDXW, 4, 1, 4, 0),
        insn(LDXW, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        // Each check jumps past the rest of the block when it fails; offsets are filled in
        // once the block's length is known.
        let mut block: Vec<(u8, u8, u8, i32, bool)> = Vec::new(); // (code, dst, src, imm, is_skip_jump)
        if let Some(t) = r.typ {
            block.push((JNE_K, 2, 0, t as i32, true));
        }
        if r.access & ACC_ALL != ACC_ALL {
            block.push((MOV32_X, 1, 3, 0, false));
            block.push((AND32_K, 1, 0, r.access as i32, false));
            block.push((JNE_X, 1, 3, 0, true));
        }
        if let Some(m) = r.major {
            block.push((JNE_K, 4, 0, m as i32, true));
        }
        if let Some(m) = r.minor {
            block.push((JNE_K, 5, 0, m as i32, true));
        }
        block.push((MOV64_K, 0, 0, i32::from(r.allow), false));
        block.push((EXIT, 0, 0, 0, false));
        let len = block.len();
        let unconditional = !block.iter().any(|b| b.4);
        for (i, (code, dst, src, imm, skip)) in block.into_iter().enumerate() {
            let off = if skip { (len - i - 1) as i16 } else { 0 };
            p.push(insn(code, dst, src, off, imm));
        }
        // Nothing after a rule that matches everything is reachable (the verifier refuses
        // unreachable code).
        if unconditional {
            return p;
        }
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

fn bpf(cmd: libc::c_long, attr: &[u8; 128]) -> std::io::Result<i32> {
    // SAFETY: attr is a zero-padded bpf_attr of the size we pass.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), attr.len()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc as i32)
    }
}

fn put32(a: &mut [u8; 128], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put64(a: &mut [u8; 128], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Loads the program for `rules` and attaches it to the cgroup2 directory `dir`.
pub fn apply(dir: &Path, rules: &[Rule]) -> Result<(), CgroupError> {
    let fail = |what: &str, e: std::io::Error| CgroupError::Io {
        path: dir.join(format!("<bpf {what}>")),
        source: e,
    };
    let insns = program(rules);
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 4096];
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE);
    put32(&mut attr, 4, insns.len() as u32);
    put64(&mut attr, 8, insns.as_ptr() as u64);
    put64(&mut attr, 16, license.as_ptr() as u64);
    put32(&mut attr, 24, 1);
    put32(&mut attr, 28, log.len() as u32);
    put64(&mut attr, 32, log.as_mut_ptr() as u64);
    let prog = bpf(BPF_PROG_LOAD, &attr).map_err(|e| {
        let msg = String::from_utf8_lossy(&log[..log.iter().position(|b| *b == 0).unwrap_or(0)])
            .into_owned();
        fail(
            "load",
            std::io::Error::new(e.kind(), format!("{e}: {}", msg.trim())),
        )
    })?;
    // SAFETY: the kernel returned a new program fd.
    let prog = unsafe { OwnedFd::from_raw_fd(prog) };
    let cg = std::fs::File::open(dir).map_err(|e| fail("open", e))?;
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, cg.as_raw_fd() as u32);
    put32(&mut attr, 4, prog.as_raw_fd() as u32);
    put32(&mut attr, 8, BPF_CGROUP_DEVICE);
    put32(&mut attr, 12, BPF_F_ALLOW_MULTI);
    // The cgroup keeps its own reference to the attached program.
    bpf(BPF_PROG_ATTACH, &attr).map_err(|e| fail("attach", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter for the instructions `program` emits, to test its meaning.
    fn eval(p: &[u64], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [access << 16 | typ, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let code = i as u8;
            let dst = ((i >> 8) & 0xf) as usize;
            let src = ((i >> 12) & 0xf) as usize;
            let off = (i >> 16) as u16 as i16;
            let imm = (i >> 32) as u32;
            pc += 1;
            match code {
                LDXW => r[dst] = u64::from(ctx[off as usize / 4]),
                AND32_K => r[dst] = (r[dst] as u32 & imm) as u64,
                RSH32_K => r[dst] = ((r[dst] as u32) >> imm) as u64,
                MOV32_X => r[dst] = r[src] as u32 as u64,
                MOV64_K => r[dst] = imm as i32 as i64 as u64,
                JNE_K => {
                    if r[dst] != u64::from(imm) {
                        pc += off as usize
                    }
                }
                JNE_X => {
                    if r[dst] != r[src] {
                        pc += off as usize
                    }
                }
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn later_rules_win_and_default_denies() {
        let deny_all = Rule {
            typ: None,
            major: None,
            minor: None,
            access: ACC_ALL,
            allow: false,
        };
        let null_rw = Rule {
            typ: Some(2),
            major: Some(1),
            minor: Some(3),
            access: 2 | 4,
            allow: true,
        };
        let p = program(&[deny_all, null_rw]);
        assert_eq!(eval(&p, 2, 2, 1, 3), 1, "read /dev/null");
        assert_eq!(eval(&p, 2, 2 | 4, 1, 3), 1, "read+write /dev/null");
        assert_eq!(eval(&p, 2, 1, 1, 3), 0, "mknod /dev/null is not granted");
        assert_eq!(eval(&p, 2, 2, 1, 7), 0, "/dev/full");
        assert_eq!(eval(&p, 1, 2, 1, 3), 0, "block 1:3");
        assert_eq!(eval(&program(&[]), 2, 2, 1, 3), 0, "empty list denies");
    }

    #[test]
    fn defaults_parse_and_wildcards_match() {
        let d = default_rules();
        assert_eq!(d.len(), super::super::devices::DEFAULT_ALLOWED.len());
        let p = program(&d);
        assert_eq!(eval(&p, 2, 1, 42, 42), 1, "mknod of any char device");
        assert_eq!(eval(&p, 2, 2 | 4, 136, 5), 1, "a pts");
        assert_eq!(eval(&p, 2, 2, 4, 1), 0, "a host tty");
    }

    #[test]
    fn oci_rule_conversion() {
        let r = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .access("rw")
            .build()
            .unwrap();
        assert_eq!(
            rule_of(&r),
            Some(Rule {
                typ: Some(2),
                major: Some(1),
                minor: Some(3),
                access: 6,
                allow: true
            })
        );
    }
}
