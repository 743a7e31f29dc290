//! The WASI state as data: serialized mid-run, restored in a new host, the
//! guest's files continue where they were.

#![allow(clippy::unwrap_used)] // Tests may unwrap (house style 14).

use ferrite_vm::{LinearMemory, Value};
use ferrite_wasi::{
    abi::rights, Errno, Fd, Preopen, ProcExit, WasiConfig, WasiCtx, WasiFunc, WasiState,
};
use std::{
    fs,
    path::{Path, PathBuf},
};

const PATH_AT: u32 = 100;
const RESULT_AT: u32 = 200;
const IOVEC_AT: u32 = 300;
const BUF_AT: u32 = 400;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("wasi-restore")
        .join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn host(dir: &Path) -> WasiCtx {
    WasiCtx::new(WasiConfig {
        args: vec!["prog".into()],
        env: vec![("K".into(), "V".into())],
        preopens: vec![Preopen {
            host_path: dir.to_path_buf(),
            guest_path: "/d".into(),
        }],
    })
    .unwrap()
}

/// Calls `func` and returns its errno.
fn call(ctx: &mut WasiCtx, memory: &mut LinearMemory, func: WasiFunc, args: &[Value]) -> Errno {
    let results = ctx.call(Some(memory), func, args).unwrap();
    let [Value::I32(code)] = results[..] else {
        panic!("{results:?}")
    };
    match code {
        0 => Errno::Success,
        8 => Errno::Badf,
        29 => Errno::Io,
        44 => Errno::Noent,
        other => panic!("unexpected errno {other}"),
    }
}

fn i32v(v: u32) -> Value {
    Value::I32(v as i32)
}

fn open(
    ctx: &mut WasiCtx,
    memory: &mut LinearMemory,
    path: &str,
    oflags: u32,
    write: bool,
) -> Result<Fd, Errno> {
    memory.write(u64::from(PATH_AT), path.as_bytes()).unwrap();
    let mut base = rights::FD_READ | rights::FD_SEEK | rights::FD_TELL;
    if write {
        base |= rights::FD_WRITE;
    }
    let errno = call(
        ctx,
        memory,
        WasiFunc::PathOpen,
        &[
            i32v(3),
            i32v(1),
            i32v(PATH_AT),
            i32v(path.len() as u32),
            i32v(oflags),
            Value::I64(base as i64),
            Value::I64(0),
            i32v(0),
            i32v(RESULT_AT),
        ],
    );
    if errno != Errno::Success {
        return Err(errno);
    }
    Ok(Fd(u32::from_le_bytes(
        memory.load::<4>(u64::from(RESULT_AT)).unwrap(),
    )))
}

fn read(ctx: &mut WasiCtx, memory: &mut LinearMemory, fd: Fd, len: u32) -> Result<String, Errno> {
    memory
        .store::<4>(u64::from(IOVEC_AT), BUF_AT.to_le_bytes())
        .unwrap();
    memory
        .store::<4>(u64::from(IOVEC_AT + 4), len.to_le_bytes())
        .unwrap();
    let errno = call(
        ctx,
        memory,
        WasiFunc::FdRead,
        &[i32v(fd.0), i32v(IOVEC_AT), i32v(1), i32v(RESULT_AT)],
    );
    if errno != Errno::Success {
        return Err(errno);
    }
    let n = u32::from_le_bytes(memory.load::<4>(u64::from(RESULT_AT)).unwrap());
    let mut bytes = vec![0; n as usize];
    memory.read(u64::from(BUF_AT), &mut bytes).unwrap();
    Ok(String::from_utf8(bytes).unwrap())
}

fn write(ctx: &mut WasiCtx, memory: &mut LinearMemory, fd: Fd, text: &str) -> Errno {
    memory.write(u64::from(BUF_AT), text.as_bytes()).unwrap();
    memory
        .store::<4>(u64::from(IOVEC_AT), BUF_AT.to_le_bytes())
        .unwrap();
    memory
        .store::<4>(u64::from(IOVEC_AT + 4), (text.len() as u32).to_le_bytes())
        .unwrap();
    call(
        ctx,
        memory,
        WasiFunc::FdWrite,
        &[i32v(fd.0), i32v(IOVEC_AT), i32v(1), i32v(RESULT_AT)],
    )
}

/// Serializes through JSON, as a checkpoint would write it.
fn through_json(state: &WasiState) -> WasiState {
    let json = serde_json::to_string_pretty(state).unwrap();
    serde_json::from_str(&json).unwrap()
}

#[test]
fn reading_continues_at_the_saved_offset() {
    let dir = scratch("offset");
    fs::write(dir.join("data.txt"), "0123456789abcdefghij").unwrap();
    let mut memory = LinearMemory::new(1, Some(1)).unwrap();
    let mut ctx = host(&dir);
    let fd = open(&mut ctx, &mut memory, "data.txt", 0, false).unwrap();
    assert_eq!(read(&mut ctx, &mut memory, fd, 5).unwrap(), "01234");

    let saved = through_json(&ctx.snapshot());
    assert_eq!(saved.fds[&fd].offset, 5);
    assert_eq!(saved.fds[&fd].location.as_ref().unwrap().path, "data.txt");
    drop(ctx);

    let (mut restored, report) = WasiCtx::restore(saved.clone()).unwrap();
    assert!(report.lost.is_empty(), "{report:?}");
    assert_eq!(restored.state().args, ["prog"]);
    assert_eq!(restored.state().env, [("K".to_string(), "V".to_string())]);
    assert_eq!(read(&mut restored, &mut memory, fd, 5).unwrap(), "56789");
    assert_eq!(
        read(&mut restored, &mut memory, fd, 100).unwrap(),
        "abcdefghij"
    );
    // The preopen works after restore, and descriptor numbering continues.
    let again = open(&mut restored, &mut memory, "data.txt", 0, false).unwrap();
    assert_eq!(again, Fd(fd.0 + 1));
    assert_eq!(read(&mut restored, &mut memory, again, 3).unwrap(), "012");
}

#[test]
fn writing_continues_and_serialization_is_stable() {
    let dir = scratch("write");
    fs::create_dir(dir.join("sub")).unwrap();
    let mut memory = LinearMemory::new(1, Some(1)).unwrap();
    let mut ctx = host(&dir);
    let fd = open(&mut ctx, &mut memory, "sub/./out.txt", 1, true).unwrap(); // CREAT
    assert_eq!(write(&mut ctx, &mut memory, fd, "abc"), Errno::Success);
    let state = ctx.snapshot();
    assert_eq!(
        state.fds[&fd].location.as_ref().unwrap().path,
        "sub/out.txt"
    );
    // Serializing twice gives the same bytes: nothing depends on hash order.
    assert_eq!(
        serde_json::to_string(&state).unwrap(),
        serde_json::to_string(&through_json(&state)).unwrap()
    );
    let (mut restored, _) = WasiCtx::restore(through_json(&state)).unwrap();
    assert_eq!(write(&mut restored, &mut memory, fd, "def"), Errno::Success);
    assert_eq!(
        fs::read_to_string(dir.join("sub/out.txt")).unwrap(),
        "abcdef"
    );
    // The monotonic clock does not go backwards across the restore.
    let before = state.monotonic_ns;
    assert!(restored.snapshot().monotonic_ns >= before);
}

#[test]
fn a_deleted_file_is_lost_and_reads_fail_with_eio() {
    let dir = scratch("lost");
    fs::write(dir.join("gone.txt"), "x").unwrap();
    fs::write(dir.join("kept.txt"), "kept").unwrap();
    let mut memory = LinearMemory::new(1, Some(1)).unwrap();
    let mut ctx = host(&dir);
    let gone = open(&mut ctx, &mut memory, "gone.txt", 0, false).unwrap();
    let kept = open(&mut ctx, &mut memory, "kept.txt", 0, false).unwrap();
    let state = through_json(&ctx.snapshot());
    fs::remove_file(dir.join("gone.txt")).unwrap();

    let (mut restored, report) = WasiCtx::restore(state).unwrap();
    assert_eq!(report.lost.len(), 1);
    assert_eq!(report.lost[0].0, gone);
    assert!(report.lost[0].1.contains("gone.txt"), "{:?}", report.lost);
    assert_eq!(read(&mut restored, &mut memory, gone, 1), Err(Errno::Io));
    assert_eq!(read(&mut restored, &mut memory, kept, 10).unwrap(), "kept");
    assert_eq!(
        call(
            &mut restored,
            &mut memory,
            WasiFunc::FdClose,
            &[i32v(gone.0)]
        ),
        Errno::Success
    );
    assert_eq!(read(&mut restored, &mut memory, gone, 1), Err(Errno::Badf));
}

#[test]
fn inconsistent_states_are_refused() {
    let dir = scratch("invalid");
    let mut state = host(&dir).snapshot();
    let mut bad = state.clone();
    bad.free_fds.insert(Fd(0));
    assert!(WasiCtx::restore(bad).is_err());
    state
        .fds
        .get_mut(&Fd(3))
        .unwrap()
        .location
        .as_mut()
        .unwrap()
        .preopen
        .0 = 7;
    assert!(WasiCtx::restore(state).is_err());
}

#[test]
fn proc_exit_ends_the_process() {
    let dir = scratch("exit");
    let mut ctx = host(&dir);
    assert_eq!(
        ctx.call(None, WasiFunc::ProcExit, &[Value::I32(3)]),
        Err(ProcExit { status: 3 })
    );
    // Without a memory, anything that touches guest memory is EFAULT.
    let results = ctx
        .call(
            None,
            WasiFunc::ArgsSizesGet,
            &[Value::I32(0), Value::I32(4)],
        )
        .unwrap();
    assert_eq!(results, [Value::I32(i32::from(Errno::Fault.code()))]);
}
