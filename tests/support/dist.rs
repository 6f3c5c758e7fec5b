//! Synthetic distributions (wheels pip and uv can install, and hostile variants) and the
//! multipart form twine sends. Shared by the integration tests and the benchmark; each
//! uses only part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

/// A synthetic distribution file.
#[derive(Clone, Debug)]
pub struct Dist {
    /// Project name as written in METADATA and the form.
    pub name: String,
    /// Version as written.
    pub version: String,
    /// The filename.
    pub filename: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Dist {
    /// A pure-Python wheel that pip and uv can install: METADATA, WHEEL, RECORD and a module.
    pub fn wheel(name: &str, version: &str) -> Self {
        Self::wheel_with(name, version, &[], "")
    }

    /// A wheel with extra METADATA headers (e.g. `Requires-Dist: other`) and a marker
    /// string in its module, so two builds of one version can differ.
    pub fn wheel_with(name: &str, version: &str, headers: &[&str], marker: &str) -> Self {
        let escaped = name.replace('-', "_");
        let dist_info = format!("{escaped}-{version}.dist-info");
        let mut metadata = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
        for header in headers {
            metadata.push_str(header);
            metadata.push('\n');
        }
        let module = format!("{escaped}/__init__.py");
        let members = vec![
            (module, format!("VERSION = {version:?}\nMARKER = {marker:?}\n").into_bytes()),
            (format!("{dist_info}/METADATA"), metadata.into_bytes()),
            (
                format!("{dist_info}/WHEEL"),
                b"Wheel-Version: 1.0\nGenerator: kiln-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_vec(),
            ),
        ];
        Self::assemble(name, version, members)
    }

    /// Zips `members` (plus a RECORD) into `{name}-{version}-py3-none-any.whl`.
    fn assemble(name: &str, version: &str, members: Vec<(String, Vec<u8>)>) -> Self {
        let escaped = name.replace('-', "_");
        let dist_info = format!("{escaped}-{version}.dist-info");
        Self {
            name: name.into(),
            version: version.into(),
            filename: format!("{escaped}-{version}-py3-none-any.whl"),
            bytes: build_wheel(&dist_info, members),
        }
    }

    /// A wheel named `name`/`version` whose METADATA file says something else entirely.
    pub fn wheel_with_metadata(name: &str, version: &str, metadata: &str) -> Self {
        let dist_info = format!("{}-{version}.dist-info", name.replace('-', "_"));
        let members = vec![(
            format!("{dist_info}/METADATA"),
            metadata.as_bytes().to_vec(),
        )];
        Self::assemble(name, version, members)
    }

    /// A wheel whose METADATA is exactly `metadata` (which need not be UTF-8).
    pub fn wheel_with_metadata_bytes(name: &str, version: &str, metadata: &[u8]) -> Self {
        let dist_info = format!("{}-{version}.dist-info", name.replace('-', "_"));
        Self::assemble(
            name,
            version,
            vec![(format!("{dist_info}/METADATA"), metadata.to_vec())],
        )
    }

    /// A wheel carrying `data` as an uncompressed `data.bin` (for large-file benchmarks).
    pub fn wheel_with_data(name: &str, version: &str, data: Vec<u8>) -> Self {
        let escaped = name.replace('-', "_");
        let dist_info = format!("{escaped}-{version}.dist-info");
        let metadata = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
        let wheel =
            "Wheel-Version: 1.0\nGenerator: kiln-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
        let members = vec![
            (format!("{escaped}/data.bin"), data),
            (format!("{dist_info}/METADATA"), metadata.into_bytes()),
            (format!("{dist_info}/WHEEL"), wheel.as_bytes().to_vec()),
        ];
        Self::assemble(name, version, members)
    }

    /// A distribution with arbitrary bytes and filename (for hostile uploads).
    pub fn raw(name: &str, version: &str, filename: &str, bytes: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            filename: filename.into(),
            bytes,
        }
    }

    /// Hex SHA-256 of the bytes.
    pub fn sha256(&self) -> String {
        hex::encode(sha2::Sha256::digest(&self.bytes))
    }

    /// The form fields twine sends, without the file.
    pub fn fields(&self) -> Vec<(String, String)> {
        let filetype = if std::path::Path::new(&self.filename)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("whl"))
        {
            "bdist_wheel"
        } else {
            "sdist"
        };
        vec![
            (":action".into(), "file_upload".into()),
            ("protocol_version".into(), "1".into()),
            ("name".into(), self.name.clone()),
            ("version".into(), self.version.clone()),
            ("filetype".into(), filetype.into()),
            ("pyversion".into(), "py3".into()),
            ("metadata_version".into(), "2.1".into()),
            ("sha256_digest".into(), self.sha256()),
            (
                "md5_digest".into(),
                format!("{:x}", md5::Md5::digest(&self.bytes)),
            ),
        ]
    }

    /// The full multipart form twine sends.
    pub fn form(&self) -> reqwest::multipart::Form {
        form_of(self.fields(), Some((&self.filename, self.bytes.clone())))
    }

    /// Writes the file into `dir` and returns its path.
    pub fn write_to(&self, dir: &Path) -> PathBuf {
        let path = dir.join(&self.filename);
        std::fs::write(&path, &self.bytes).unwrap();
        path
    }
}

/// Builds a multipart form from fields and an optional `content` file.
pub fn form_of(
    fields: Vec<(String, String)>,
    content: Option<(&str, Vec<u8>)>,
) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k, v);
    }
    if let Some((filename, bytes)) = content {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(filename.to_owned())
            .mime_str("application/octet-stream")
            .unwrap();
        form = form.part("content", part);
    }
    form
}

fn build_wheel(dist_info: &str, mut members: Vec<(String, Vec<u8>)>) -> Vec<u8> {
    use base64::Engine as _;
    let mut record = String::new();
    for (path, data) in &members {
        let hash =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(data));
        let _ = writeln!(record, "{path},sha256={hash},{}", data.len());
    }
    let _ = writeln!(record, "{dist_info}/RECORD,,");
    members.push((format!("{dist_info}/RECORD"), record.into_bytes()));
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    for (path, data) in members {
        zip.start_file(path, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(&data).unwrap();
    }
    zip.finish().unwrap();
    buf.into_inner()
}

/// One member of a hand-made tar archive, with its path written byte for byte (the tar
/// crate's own setters refuse the hostile paths the tests need).
pub enum TarMember<'a> {
    /// A regular file.
    File(&'a [u8], &'a [u8]),
    /// A symbolic link: path, target.
    Symlink(&'a [u8], &'a [u8]),
    /// A hard link: path, target.
    HardLink(&'a [u8], &'a [u8]),
    /// A character device.
    CharDevice(&'a [u8]),
}

/// A `.tar.gz` of `members`.
pub fn tar_gz(members: &[TarMember<'_>]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for member in members {
        let mut header = tar::Header::new_old();
        let (path, data, kind, link): (&[u8], &[u8], tar::EntryType, &[u8]) = match member {
            TarMember::File(path, data) => (path, data, tar::EntryType::Regular, b""),
            TarMember::Symlink(path, target) => (path, b"", tar::EntryType::Symlink, target),
            TarMember::HardLink(path, target) => (path, b"", tar::EntryType::Link, target),
            TarMember::CharDevice(path) => (path, b"", tar::EntryType::Char, b""),
        };
        let old = header.as_old_mut();
        old.name[..path.len()].copy_from_slice(path);
        old.linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, std::io::Cursor::new(data)).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

impl Dist {
    /// A plausible sdist `{name}-{version}.tar.gz` with PKG-INFO and a module.
    pub fn sdist(name: &str, version: &str) -> Self {
        let root = format!("{name}-{version}");
        let pkg_info = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
        let module = format!("{root}/{}/__init__.py", name.replace('-', "_"));
        let bytes = tar_gz(&[
            TarMember::File(format!("{root}/PKG-INFO").as_bytes(), pkg_info.as_bytes()),
            TarMember::File(module.as_bytes(), b"VERSION = 1\n"),
        ]);
        Self::raw(name, version, &format!("{root}.tar.gz"), bytes)
    }
}

impl Dist {
    /// A valid `{name}-{version}` wheel plus `extra` members, zipped as given.
    pub fn wheel_plus(name: &str, version: &str, extra: &[(&str, &[u8])]) -> Self {
        let mut dist = Self::wheel(name, version);
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(dist.bytes.clone())).unwrap();
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut buf);
        for i in 0..archive.len() {
            zip.raw_copy_file(archive.by_index(i).unwrap()).unwrap();
        }
        for (path, data) in extra {
            zip.start_file(*path, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
        dist.bytes = buf.into_inner();
        dist
    }

    /// A valid wheel plus a symbolic link member.
    pub fn wheel_with_symlink(name: &str, version: &str, link: &str, target: &str) -> Self {
        let mut dist = Self::wheel(name, version);
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(dist.bytes.clone())).unwrap();
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut buf);
        for i in 0..archive.len() {
            zip.raw_copy_file(archive.by_index(i).unwrap()).unwrap();
        }
        zip.add_symlink(link, target, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.finish().unwrap();
        dist.bytes = buf.into_inner();
        dist
    }
}
