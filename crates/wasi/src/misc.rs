//! Arguments, environment, clocks and randomness.

use crate::{ctx::WasiCtx, guest::Guest, Errno};

/// `random_get` fills guest memory in chunks of this many bytes, so a request of
/// any size costs a bounded host buffer.
const RANDOM_CHUNK_BYTES: usize = 64 << 10;

/// The `NUL`-terminated strings of a vector (`argv` or `environ`).
fn strings(items: impl Iterator<Item = Vec<u8>>) -> Vec<Vec<u8>> {
    items
        .map(|mut item| {
            item.push(0);
            item
        })
        .collect()
}

/// Writes `items` as a C vector: pointers at `vector`, bytes from `buf` on.
fn write_vector(g: &mut Guest<'_>, items: &[Vec<u8>], vector: u32, buf: u32) -> Result<(), Errno> {
    let total: u64 = items.iter().map(|item| item.len() as u64).sum();
    g.check(vector, items.len() as u64 * 4)?;
    g.check(buf, total)?;
    let mut at = buf;
    for (index, item) in items.iter().enumerate() {
        g.write_u32(vector + index as u32 * 4, at)?;
        g.write_bytes(at, item)?;
        at += item.len() as u32;
    }
    Ok(())
}

fn write_sizes(
    g: &mut Guest<'_>,
    items: &[Vec<u8>],
    count_ptr: u32,
    size_ptr: u32,
) -> Result<(), Errno> {
    let count = u32::try_from(items.len()).map_err(|_| Errno::Overflow)?;
    let size: usize = items.iter().map(Vec::len).sum();
    let size = u32::try_from(size).map_err(|_| Errno::Overflow)?;
    g.check(count_ptr, 4)?;
    g.check(size_ptr, 4)?;
    g.write_u32(count_ptr, count)?;
    g.write_u32(size_ptr, size)
}

impl WasiCtx {
    fn argv(&self) -> Vec<Vec<u8>> {
        strings(self.state.args.iter().map(|arg| arg.as_bytes().to_vec()))
    }

    fn environ(&self) -> Vec<Vec<u8>> {
        strings(
            self.state
                .env
                .iter()
                .map(|(key, value)| format!("{key}={value}").into_bytes()),
        )
    }

    pub(crate) fn args_get(&mut self, g: &mut Guest<'_>, argv: u32, buf: u32) -> Result<(), Errno> {
        write_vector(g, &self.argv(), argv, buf)
    }

    pub(crate) fn args_sizes_get(
        &mut self,
        g: &mut Guest<'_>,
        count: u32,
        size: u32,
    ) -> Result<(), Errno> {
        write_sizes(g, &self.argv(), count, size)
    }

    pub(crate) fn environ_get(
        &mut self,
        g: &mut Guest<'_>,
        environ: u32,
        buf: u32,
    ) -> Result<(), Errno> {
        write_vector(g, &self.environ(), environ, buf)
    }

    pub(crate) fn environ_sizes_get(
        &mut self,
        g: &mut Guest<'_>,
        count: u32,
        size: u32,
    ) -> Result<(), Errno> {
        write_sizes(g, &self.environ(), count, size)
    }

    pub(crate) fn clock_res_get(
        &mut self,
        g: &mut Guest<'_>,
        id: u32,
        ptr: u32,
    ) -> Result<(), Errno> {
        let resolution = self.clock.resolution(id)?;
        g.write_u64(ptr, resolution)
    }

    pub(crate) fn clock_time_get(
        &mut self,
        g: &mut Guest<'_>,
        id: u32,
        _precision: u64,
        ptr: u32,
    ) -> Result<(), Errno> {
        let now = self.clock.now(id)?;
        g.write_u64(ptr, now)
    }

    pub(crate) fn random_get(
        &mut self,
        g: &mut Guest<'_>,
        buf: u32,
        len: u32,
    ) -> Result<(), Errno> {
        g.check(buf, u64::from(len))?;
        let mut chunk = vec![0; RANDOM_CHUNK_BYTES.min(len as usize)];
        let mut done = 0u32;
        while done < len {
            let n = ((len - done) as usize).min(chunk.len());
            self.entropy.fill(&mut chunk[..n])?;
            g.write_bytes(buf + done, &chunk[..n])?;
            done += n as u32;
        }
        Ok(())
    }
}
