/// Size of a WebAssembly page, the unit of `memory.grow`, in bytes.
pub const WASM_PAGE_SIZE: u64 = 65_536;

/// The largest number of WebAssembly pages a 32-bit memory may have (4 GiB).
pub const WASM_PAGES_MAX: u32 = 65_536;

/// Bounds on the explicit stacks of an execution.
///
/// Both stacks are plain data owned by the execution; running out of either is a
/// `call stack exhausted` trap, never a host stack overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackLimits {
    /// The deepest wasm call nesting allowed.
    pub call_depth_max: u32,
    /// The largest number of 64-bit value slots (locals, operands, constants) of all
    /// frames together.
    pub value_slots_max: u32,
}

impl StackLimits {
    /// The bounds accepted by [`StackLimits::validate`].
    pub const CALL_DEPTH_MAX_LIMIT: u32 = 1 << 24;
    /// The largest `value_slots_max` accepted (8 GiB of slots is far beyond any device).
    pub const VALUE_SLOTS_MAX_LIMIT: u32 = 1 << 30;

    /// Checks that both limits are non-zero and within the hard limits.
    ///
    /// # Errors
    /// Returns a human-readable description of the first bad limit.
    pub fn validate(&self) -> Result<(), String> {
        if self.call_depth_max == 0 || self.call_depth_max > Self::CALL_DEPTH_MAX_LIMIT {
            return Err(format!(
                "call depth limit must be between 1 and {}, got {}",
                Self::CALL_DEPTH_MAX_LIMIT,
                self.call_depth_max
            ));
        }
        if self.value_slots_max < 1024 || self.value_slots_max > Self::VALUE_SLOTS_MAX_LIMIT {
            return Err(format!(
                "value stack limit must be between 1024 and {} slots, got {}",
                Self::VALUE_SLOTS_MAX_LIMIT,
                self.value_slots_max
            ));
        }
        Ok(())
    }
}

impl Default for StackLimits {
    /// Deep enough for ordinary recursive programs, small enough to trap quickly on
    /// runaway recursion: 100k frames and 8 MiB of value slots.
    fn default() -> Self {
        Self {
            call_depth_max: 100_000,
            value_slots_max: 1 << 20,
        }
    }
}
