//! Large zeroed buffers that fault in as huge pages.
//!
//! A fresh 50–500 MB buffer (a decoded volume, a batch) is an anonymous mapping whose
//! pages fault in on first write; with 4 KiB pages that is ~15k faults per 58 MB volume,
//! which made reading an uncompressed `.nii` slower than numpy (which asks for huge pages
//! on large arrays the same way). Advice only: where the kernel says no, nothing changes.

/// Below this a buffer is not worth a system call (and malloc may not map it afresh).
const HUGE_MIN_BYTES: usize = 4 << 20;

/// `vec![T::zeroed(); n]`, advised to use transparent huge pages when large.
pub fn zeroed<T: bytemuck::Zeroable + Clone>(n: usize) -> Vec<T> {
    let v = vec![T::zeroed(); n];
    advise_huge(v.as_ptr() as usize, std::mem::size_of_val(v.as_slice()));
    v
}

/// `v`'s first `n` values, growing it (with default values) when shorter: scratch kept
/// from call to call, whose callers write every value before they read it.
pub fn grown<T: Copy + Default>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() < n {
        v.resize(n, T::default());
    }
    &mut v[..n]
}

/// `n` bytes of `file` from `offset`, in 8-byte words (the tail of the last word zero).
/// On Linux the kernel writes straight into fresh, never-zeroed memory (numpy's
/// `fromfile` does the same); zeroing first would cost as much as a third of the read.
/// With `spares`, into a kept buffer when one fits (its length may exceed ⌈n / 8⌉ words).
pub fn read_words_at(
    file: &std::fs::File,
    offset: u64,
    n: usize,
    spares: Option<&Spares>,
) -> std::io::Result<Vec<u64>> {
    let words = n.div_ceil(8);
    if let Some(mut v) = spares.and_then(|s| s.take_fitting(words)) {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        let bytes = bytemuck::cast_slice_mut::<u64, u8>(&mut v);
        f.read_exact(&mut bytes[..n])?;
        bytes[n..words * 8].fill(0);
        return Ok(v);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut v: Vec<u64> = Vec::with_capacity(words);
        advise_huge(v.as_ptr() as usize, words * 8);
        let base = v.as_mut_ptr() as *mut u8;
        let mut done = 0usize;
        while done < n {
            let want = (n - done).min(1 << 30);
            let at = libc::off_t::try_from(offset + done as u64)
                .map_err(|_| std::io::Error::other("offset beyond the file API's range"))?;
            // SAFETY: `base + done .. + want` lies inside the capacity reserved above; the
            // kernel writes bytes there and we only read back what it reports written.
            let got = unsafe { libc::pread(file.as_raw_fd(), base.add(done).cast(), want, at) };
            match got {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                g if g < 0 => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
                g => done += g as usize,
            }
        }
        // SAFETY: bytes 0..n were written by pread; the rest of the last word is zeroed now.
        unsafe {
            std::ptr::write_bytes(base.add(n), 0, words * 8 - n);
            v.set_len(words);
        }
        Ok(v)
    }
    #[cfg(not(target_os = "linux"))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut v: Vec<u64> = zeroed(words);
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(&mut bytemuck::cast_slice_mut::<u64, u8>(&mut v)[..n])?;
        Ok(v)
    }
}

/// Positioned read of exactly `buf.len()` bytes at `offset` (a short read: truncated).
pub fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n = std::os::windows::fs::FileExt::seek_read(
                file,
                &mut buf[done..],
                offset + done as u64,
            )?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
}

/// Per-thread spare word buffers for per-image data (2D planes and labels): a 2D image's
/// 0.6 MB of planes would otherwise be a fresh mapping, faulted in and cleared, per image.
/// Only buffers up to `SPARE_MAX_BYTES` are kept, at most `SPARE_KEEP` per thread.
const SPARE_MAX_BYTES: usize = 8 << 20;
const SPARE_KEEP: usize = 4;

thread_local! {
    static SPARE_WORDS: Recycler<u64> = Recycler::new(SPARE_KEEP);
}

/// `n` words, contents unspecified (a spare of that length from this thread, else zeroed):
/// for callers that write every word they later read.
pub fn spare_words(n: usize) -> Vec<u64> {
    SPARE_WORDS.with(|spares| spares.take(n))
}

/// Keep `v` for `spare_words` on this thread, if it is small enough and there is room.
pub fn keep_spare(v: Vec<u64>) {
    if v.len() * 8 <= SPARE_MAX_BYTES {
        SPARE_WORDS.with(|spares| spares.give(v));
    }
}

/// Batch buffers handed to Python and taken back when Python lets go of them.
///
/// Why: a fresh 20 MB batch per step is an mmap whose pages fault in and are cleared by the
/// kernel; worse, a batch freed on Python's thread into a worker's malloc arena makes glibc
/// trim that arena, so the next images' scratch buffers fault in afresh too (measured: ~200
/// page faults per 2D image, ~13 % of the 2D stream's time). Recycled buffers skip both.
/// Contents of a taken buffer are unspecified (a previous batch's values): the stream
/// writes every element of a batch (tests: a recycling run equals a non-recycling one).
pub struct Recycler<T> {
    free: std::sync::Mutex<Vec<Vec<T>>>,
    /// at most this many idle buffers are kept (the pipeline's depth: no more are ever in
    /// flight at once, so keeping them costs no memory a running stream did not use)
    keep: usize,
}

impl<T: bytemuck::Zeroable + Clone> Recycler<T> {
    pub fn new(keep: usize) -> Self {
        Recycler {
            free: std::sync::Mutex::new(Vec::new()),
            keep,
        }
    }

    /// A buffer of `n` elements, contents unspecified: a kept one of that length, else new.
    pub fn take(&self, n: usize) -> Vec<T> {
        if let Ok(mut free) = self.free.lock() {
            if let Some(i) = free.iter().position(|v| v.len() == n) {
                return free.swap_remove(i);
            }
        }
        zeroed(n)
    }

    /// Hand a buffer back; dropped when `keep` are already idle.
    pub fn give(&self, v: Vec<T>) {
        if let Ok(mut free) = self.free.lock() {
            if free.len() < self.keep {
                free.push(v);
            }
        }
    }

    #[cfg(test)]
    fn idle(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }
}

/// Large word buffers of a stream's finished volumes (decoded voxels, compressed file
/// bytes), kept for its next decodes.
///
/// Why: every decode of a 58 MB volume otherwise maps fresh memory that the kernel faults
/// in and clears page by page (measured: ~7 % of an uncached 3D stream's time), then
/// unmaps it when the volume is dropped. A taken buffer's contents are unspecified and its
/// length may exceed the request by up to a quarter: readers fill what they use and keep
/// their own length. A miss frees the oldest idle buffer before a fresh one is mapped, so
/// idle plus in-use buffers do not outgrow what the stream had in use at once.
pub struct Spares {
    free: std::sync::Mutex<std::collections::VecDeque<Vec<u64>>>,
    keep: usize,
    /// buffers handed out again (a stream's stats)
    pub reused: std::sync::atomic::AtomicUsize,
}

impl Spares {
    pub fn new(keep: usize) -> Self {
        Spares {
            free: std::sync::Mutex::new(std::collections::VecDeque::new()),
            keep,
            reused: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The smallest idle buffer of `n` to `n + n / 4` words, if any.
    pub fn take_fitting(&self, n: usize) -> Option<Vec<u64>> {
        let mut free = self.free.lock().ok()?;
        let (i, _) = free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.len() >= n && v.len() - n <= n / 4)
            .min_by_key(|(_, v)| v.len())?;
        self.reused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        free.remove(i)
    }

    /// At least `n` words, contents unspecified: a fitting idle buffer, else (after the
    /// oldest idle buffer is freed) a fresh zeroed one.
    pub fn take(&self, n: usize) -> Vec<u64> {
        if let Some(v) = self.take_fitting(n) {
            return v;
        }
        if let Ok(mut free) = self.free.lock() {
            free.pop_front();
        }
        zeroed(n)
    }

    /// Keep a buffer (small ones are left to malloc); the oldest goes when `keep` are idle.
    pub fn give(&self, v: Vec<u64>) {
        if v.len() * 8 < HUGE_MIN_BYTES {
            return;
        }
        if let Ok(mut free) = self.free.lock() {
            if free.len() >= self.keep {
                free.pop_front();
            }
            free.push_back(v);
        }
    }

    #[cfg(test)]
    fn idle(&self) -> Vec<usize> {
        self.free
            .lock()
            .map(|f| f.iter().map(Vec::len).collect())
            .unwrap_or_default()
    }
}

/// Ask for huge pages on the `bytes` from address `start` (whole 4 KiB pages inside them).
#[cfg(target_os = "linux")]
fn advise_huge(start: usize, bytes: usize) {
    if bytes < HUGE_MIN_BYTES {
        return;
    }
    const PAGE: usize = 4096;
    let aligned = start.next_multiple_of(PAGE);
    let end = start + bytes;
    if end > aligned {
        // SAFETY: the range lies inside a live allocation we own; MADV_HUGEPAGE only
        // changes how future faults are served, never the contents.
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                end - aligned,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_: usize, _: usize) {}

#[cfg(test)]
mod tests {
    #[test]
    fn zeroed_buffers_are_zero() {
        for n in [0usize, 1, 4096, (8 << 20) + 3] {
            let v: Vec<f32> = super::zeroed(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&x| x == 0.0));
        }
    }

    #[test]
    fn spare_words_are_reused_on_the_thread() {
        let a = super::spare_words(1000);
        let ptr = a.as_ptr();
        super::keep_spare(a);
        let b = super::spare_words(1000);
        assert_eq!(b.as_ptr(), ptr);
        super::keep_spare(vec![0; (16 << 20) / 8]); // too large to keep
        assert_eq!(super::spare_words((16 << 20) / 8).len(), (16 << 20) / 8);
    }

    #[test]
    fn recycled_buffers_are_reused_up_to_keep() {
        let r = super::Recycler::<f32>::new(2);
        let a = r.take(10);
        let ptr = a.as_ptr();
        r.give(a);
        let b = r.take(10);
        assert_eq!(b.as_ptr(), ptr, "a kept buffer of that length is reused");
        assert_eq!(r.take(7).len(), 7, "other lengths get a new buffer");
        for _ in 0..4 {
            r.give(vec![0.0; 10]);
        }
        assert_eq!(r.idle(), 2);
        drop(b);
    }

    #[test]
    fn spares_hand_out_the_best_fit_and_stay_bounded() {
        const W: usize = (super::HUGE_MIN_BYTES / 8) * 2;
        let s = super::Spares::new(3);
        s.give(vec![1u64; 16]); // small: left to malloc
        assert!(s.idle().is_empty());
        for len in [W + W / 2, W + W / 8, W] {
            s.give(vec![7u64; len]);
        }
        assert_eq!(s.take(W).len(), W, "the exact fit beats a larger one");
        assert_eq!(s.take(W).len(), W + W / 8, "within a quarter more");
        // W + W/2 is more than a quarter over: a miss frees it and maps a fresh buffer
        let fresh = s.take(W);
        assert_eq!(fresh.len(), W);
        assert!(fresh.iter().all(|&v| v == 0));
        assert!(s.idle().is_empty());
        for _ in 0..5 {
            s.give(vec![0u64; W]);
        }
        assert_eq!(s.idle().len(), 3, "at most `keep` idle");
        assert!(s.take_fitting(W * 2).is_none());
    }

    /// A temporary file of `len` patterned bytes: (path, its bytes, the open file).
    fn patterned_file(name: &str, len: u32) -> (std::path::PathBuf, Vec<u8>, std::fs::File) {
        let path = std::env::temp_dir().join(format!("qgfast-{name}-{}", std::process::id()));
        let bytes: Vec<u8> = (0..len).map(|i| (i * 13 % 253) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        (path, bytes, file)
    }

    #[test]
    fn reads_into_spares_equal_fresh_reads() {
        let (path, _, file) = patterned_file("spares", 9_000_000);
        let spares = super::Spares::new(2);
        let n: usize = 8_999_990;
        spares.give(vec![u64::MAX; n.div_ceil(8) + 5]); // stale contents, a few words over
        let got = super::read_words_at(&file, 7, n, Some(&spares)).unwrap();
        assert_eq!(got.len(), n.div_ceil(8) + 5, "the spare was used");
        let fresh = super::read_words_at(&file, 7, n, None).unwrap();
        let words = n.div_ceil(8);
        assert_eq!(
            got[..words],
            fresh[..],
            "same bytes, the last word's tail zeroed"
        );
        spares.give(got);
        assert!(
            super::read_words_at(&file, 11, n, Some(&spares)).is_err(),
            "past the end"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn positioned_reads_return_the_bytes_and_fail_past_the_end() {
        let (path, bytes, file) = patterned_file("buffer", 5_000_000);
        for (offset, n) in [(0u64, 0usize), (3, 13), (352, 4_999_000), (4_999_990, 10)] {
            let words = super::read_words_at(&file, offset, n, None).unwrap();
            let got = &bytemuck::cast_slice::<u64, u8>(&words)[..n];
            assert_eq!(got, &bytes[offset as usize..offset as usize + n]);
            assert!(bytemuck::cast_slice::<u64, u8>(&words)[n..]
                .iter()
                .all(|&b| b == 0));
        }
        assert!(super::read_words_at(&file, 4_999_990, 11, None).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
