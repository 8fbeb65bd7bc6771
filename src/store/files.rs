//! Job files (export output, import uploads) behind a small interface, so shared object storage
//! can replace the local disk later without touching job logic.
//!
//! Files are addressed by (org, job id, file name). Writers append at a byte offset the caller
//! recorded in its last checkpoint: anything past that offset (written before a crash) is cut
//! off first, so a resumed job never duplicates bytes. [`FileStore::commit`] publishes a
//! finished temp file under its final name and is idempotent.
use async_trait::async_trait;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// An open file being appended to.
pub trait FileAppend: Write + Send {
    /// Makes everything written so far durable.
    fn sync(&mut self) -> io::Result<()>;
}

/// A readable job file.
pub type FileReader = Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// Where job files live. Write methods block: call them off the async runtime.
#[async_trait]
pub trait FileStore: Send + Sync {
    /// Opens `name` for appending at `offset` (creating it when `offset` is 0), discarding
    /// any bytes after `offset`.
    fn append_at(
        &self,
        org: &str,
        job: &str,
        name: &str,
        offset: u64,
    ) -> io::Result<Box<dyn FileAppend>>;
    /// Renames `temp` to `name` durably. Succeeds if `temp` is gone and `name` exists (a
    /// commit that already happened).
    fn commit(&self, org: &str, job: &str, temp: &str, name: &str) -> io::Result<()>;
    /// Undoes a commit that a checkpoint never recorded: moves `name` back to `temp` if
    /// `temp` is missing. A no-op otherwise.
    fn uncommit(&self, org: &str, job: &str, temp: &str, name: &str) -> io::Result<()>;
    /// Reads the first `len` bytes of `name` synchronously (to rebuild a hash on resume).
    fn read_prefix(
        &self,
        org: &str,
        job: &str,
        name: &str,
        len: u64,
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<()>;
    /// Reads up to `max` bytes of `name` from `offset` (fewer at the end of the file).
    fn read_at(
        &self,
        org: &str,
        job: &str,
        name: &str,
        offset: u64,
        max: usize,
    ) -> io::Result<Vec<u8>>;
    /// Opens `name` for streaming; `None` when it does not exist. Returns the reader and its length.
    async fn open(&self, org: &str, job: &str, name: &str)
    -> io::Result<Option<(FileReader, u64)>>;
    /// Deletes every file of a job.
    fn delete_job(&self, org: &str, job: &str) -> io::Result<()>;
}

/// Files on the local disk under `root/{org}/{job}/{name}`.
pub struct LocalFiles {
    root: PathBuf,
}

impl LocalFiles {
    /// A store rooted at `root` (usually `data_dir/files`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn dir(&self, org: &str, job: &str) -> io::Result<PathBuf> {
        // Org ids and job ids are validated names, but never let a path escape the root.
        for part in [org, job] {
            if part.is_empty() || part.contains(['/', '\\']) || part.starts_with('.') {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad path part"));
            }
        }
        Ok(self.root.join(org).join(job))
    }

    fn path(&self, org: &str, job: &str, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad file name"));
        }
        Ok(self.dir(org, job)?.join(name))
    }
}

struct LocalAppend(std::io::BufWriter<std::fs::File>);

impl Write for LocalAppend {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl FileAppend for LocalAppend {
    fn sync(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.0.get_ref().sync_data()
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl FileStore for LocalFiles {
    fn append_at(
        &self,
        org: &str,
        job: &str,
        name: &str,
        offset: u64,
    ) -> io::Result<Box<dyn FileAppend>> {
        let path = self.path(org, job, name)?;
        let dir = self.dir(org, job)?;
        let created = !path.exists();
        if created {
            std::fs::create_dir_all(&dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        let len = f.metadata()?.len();
        if len < offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name} has {len} bytes, the checkpoint says {offset}"),
            ));
        }
        if len > offset {
            f.set_len(offset)?;
        }
        f.seek(SeekFrom::Start(offset))?;
        if created {
            sync_dir(&dir)?;
        }
        Ok(Box::new(LocalAppend(std::io::BufWriter::with_capacity(
            1 << 20,
            f,
        ))))
    }

    fn commit(&self, org: &str, job: &str, temp: &str, name: &str) -> io::Result<()> {
        let (from, to) = (self.path(org, job, temp)?, self.path(org, job, name)?);
        if !from.exists() && to.exists() {
            return Ok(());
        }
        std::fs::rename(&from, &to)?;
        sync_dir(&self.dir(org, job)?)
    }

    fn uncommit(&self, org: &str, job: &str, temp: &str, name: &str) -> io::Result<()> {
        let (tmp, fin) = (self.path(org, job, temp)?, self.path(org, job, name)?);
        if !tmp.exists() && fin.exists() {
            std::fs::rename(&fin, &tmp)?;
            sync_dir(&self.dir(org, job)?)?;
        }
        Ok(())
    }

    fn read_prefix(
        &self,
        org: &str,
        job: &str,
        name: &str,
        len: u64,
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<()> {
        let f = std::fs::File::open(self.path(org, job, name)?)?;
        let mut r = std::io::BufReader::with_capacity(1 << 20, f).take(len);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            sink(&buf[..n]);
        }
    }

    fn read_at(
        &self,
        org: &str,
        job: &str,
        name: &str,
        offset: u64,
        max: usize,
    ) -> io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(self.path(org, job, name)?)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut out = Vec::with_capacity(max.min(16 << 20));
        f.take(max as u64).read_to_end(&mut out)?;
        Ok(out)
    }

    async fn open(
        &self,
        org: &str,
        job: &str,
        name: &str,
    ) -> io::Result<Option<(FileReader, u64)>> {
        let path = self.path(org, job, name)?;
        match tokio::fs::File::open(&path).await {
            Ok(f) => {
                let len = f.metadata().await?.len();
                Ok(Some((Box::pin(f), len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn delete_job(&self, org: &str, job: &str) -> io::Result<()> {
        match std::fs::remove_dir_all(self.dir(org, job)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_truncates_past_the_checkpoint_and_commit_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let fs = LocalFiles::new(dir.path());
        let mut w = fs.append_at("org", "job", "a.part", 0).unwrap();
        w.write_all(b"line1\nline2\n").unwrap();
        w.sync().unwrap();
        drop(w);
        let mut w = fs.append_at("org", "job", "a.part", 6).unwrap();
        w.write_all(b"again\n").unwrap();
        w.sync().unwrap();
        drop(w);
        fs.commit("org", "job", "a.part", "a").unwrap();
        fs.commit("org", "job", "a.part", "a").unwrap();
        let mut got = Vec::new();
        fs.read_prefix("org", "job", "a", 100, &mut |b| got.extend_from_slice(b))
            .unwrap();
        assert_eq!(got, b"line1\nagain\n");
        assert!(fs.append_at("../x", "job", "a", 0).is_err());
        fs.delete_job("org", "job").unwrap();
    }
}
