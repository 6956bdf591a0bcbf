"""Files: the repository on both databases, the intake with real files (OCR by the real Tesseract), the skill.

Every file here is made by the test: a PDF with a text layer written by hand, a scanned PDF (text drawn
with Pillow, no text layer, so only OCR can find the words), a PDF mixing both, DOCX from python-docx,
PNG and JPEG with drawn text, encrypted and damaged PDFs, and a Windows executable named ``.pdf``.
"""

from __future__ import annotations

import io
import stat
from datetime import UTC, datetime
from pathlib import Path

import docx
import pytest
from PIL import Image, ImageDraw, ImageFont
from pypdf import PdfReader, PdfWriter

from hearth.errors import InvalidRequest, NotFound
from hearth.sdk import SkillContext
from hearth.skills.builtin.files import ExtractionLimits, FileIntake, FilesSkill
from hearth.skills.builtin.files.extract import sniff
from hearth.skills.builtin.files.intake import safe_filename
from hearth.skills.builtin.files.skill import split_parts
from hearth.skills.invoke import InProcess, invoke
from hearth.skills.matcher import Matcher
from hearth.skills.services import ContextFactory
from hearth.store import ConversationRepository, Database, PlainTextCodec, UserRecord, UserRepository, upgrade
from hearth.store.files import FileRepository
from hearth.store.skills import SkillRepository
from hearth.types import Actor

# --- files made here ---------------------------------------------------------------------------------


def text_pdf(pages: list[list[str]]) -> bytes:
    """A PDF with a real text layer (Helvetica), one list of lines per page, written object by object."""
    count = len(pages)
    page_ids = [4 + 2 * i for i in range(count)]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: f"<< /Type /Pages /Kids [{' '.join(f'{p} 0 R' for p in page_ids)}] /Count {count} >>".encode(),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    for page_id, lines in zip(page_ids, pages, strict=True):
        shown = " ".join("(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") '"
                         for line in lines)
        stream = f"BT /F1 16 Tf 20 TL 72 760 Td {shown} ET".encode("latin-1")
        objects[page_id] = (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {page_id + 1} 0 R "
                            "/Resources << /Font << /F1 3 0 R >> >> >>").encode()
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offsets[n] for n in sorted(objects))
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def drawn(lines: list[str], width: int = 640) -> Image.Image:
    """Black text on white, in Pillow's own font at a size Tesseract reads well."""
    font = ImageFont.load_default(size=36)
    picture = Image.new("L", (width, 30 + 52 * len(lines)), 255)
    pen = ImageDraw.Draw(picture)
    for row, line in enumerate(lines):
        pen.text((20, 15 + 52 * row), line, font=font, fill=0)
    return picture


def image_bytes(lines: list[str], kind: str) -> bytes:
    out = io.BytesIO()
    picture = drawn(lines)
    if kind == "JPEG":
        picture.convert("RGB").save(out, "JPEG", quality=92)
    else:
        picture.save(out, kind)
    return out.getvalue()


def scanned_pdf(lines: list[str]) -> bytes:
    """A PDF that is only a picture of text: no text layer at all."""
    out = io.BytesIO()
    drawn(lines).convert("RGB").save(out, "PDF", resolution=100)
    return out.getvalue()


def merged_pdf(*documents: bytes) -> bytes:
    writer = PdfWriter()
    for document in documents:
        writer.append(PdfReader(io.BytesIO(document)))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def encrypted_pdf(document: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(document)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes() -> bytes:
    document = docx.Document()
    document.add_heading("Lighthouse maintenance plan", level=1)
    document.add_paragraph("The keeper inspects the lantern every Tuesday.")
    table = document.add_table(rows=2, cols=2)
    for (row, column), value in {(0, 0): "Item", (0, 1): "Cost", (1, 0): "Fresnel lens", (1, 1): "4200"}.items():
        table.cell(row, column).text = value
    document.add_paragraph("Approved by the harbour board.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


EXE = (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 44 + b"PE\x00\x00"
       + bytes(range(256)) * 8)


def words_in(text: str, *words: str) -> bool:
    lowered = text.lower()
    return all(word.lower() in lowered for word in words)


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture
async def alice(db: Database) -> UserRecord:
    return await UserRepository(db).create_user("alice")


@pytest.fixture
async def bob(db: Database) -> UserRecord:
    return await UserRepository(db).create_user("bob")


@pytest.fixture
def intake(db: Database, tmp_path: Path) -> FileIntake:
    return FileIntake(FileRepository(db, PlainTextCodec()), tmp_path / "files")


# --- the repository, on SQLite and PostgreSQL ------------------------------------------------------------


async def test_repository_on_both_databases(database_url: str) -> None:
    db = Database(database_url)
    await upgrade(db)
    try:
        users = UserRepository(db)
        alice, bob = await users.create_user("alice"), await users.create_user("bob")
        files = FileRepository(db, PlainTextCodec())
        common = {"media_type": "text/plain", "size": 5, "sha256": "0" * 64}
        first = await files.add(file_id="a" * 32, user_id=alice.id, filename="notes.txt", path="1/a.txt",
                                status="ready", text="hello wörld", **common)
        second = await files.add(file_id="ab" + "c" * 30, user_id=alice.id, filename="Scan.PDF", path="1/b.pdf",
                                 status="failed", error="This PDF is protected by a password.", **common)
        assert first.created_at.tzinfo is UTC
        assert await files.get(alice.id, first.id) == first
        assert [f.id for f in await files.list(alice.id)] == [second.id, first.id]
        assert [f.id for f in await files.list(alice.id, limit=1)] == [second.id]
        assert await files.text(alice.id, first.id) == "hello wörld"
        assert await files.text(alice.id, second.id) is None
        # ids, unique prefixes and names (any case, or a part of one) find a file; "a" is too short
        assert (await files.find(alice.id, "aaaa")).id == first.id
        assert (await files.find(alice.id, "scan.pdf")).id == second.id
        assert (await files.find(alice.id, "note")).id == first.id
        with pytest.raises(InvalidRequest) as caught:
            await files.find(alice.id, ".")  # both names have a dot
        assert caught.value.code == "ambiguous"
        with pytest.raises(NotFound):
            await files.find(alice.id, "%")  # LIKE wildcards are matched literally
        # another user's file does not exist for bob, whatever the call
        for call in (files.get(bob.id, first.id), files.text(bob.id, first.id), files.delete(bob.id, first.id),
                     files.find(bob.id, "notes.txt")):
            with pytest.raises(NotFound):
                await call
        assert await files.list(bob.id) == []
        # a conversation of someone else's cannot be named
        conversation = await ConversationRepository(db, PlainTextCodec()).create_conversation(bob.id, "api")
        with pytest.raises(NotFound):
            await files.add(file_id="d" * 32, user_id=alice.id, filename="x.txt", path="1/d.txt", status="ready",
                            text="x", conversation_id=conversation.id, **common)
        assert await files.delete(alice.id, first.id) == "1/a.txt"
        with pytest.raises(NotFound):
            await files.get(alice.id, first.id)
    finally:
        await db.aclose()


# --- sniffing and names ---------------------------------------------------------------------------------


def test_the_bytes_decide_the_type_not_the_name() -> None:
    assert sniff(text_pdf([["x"]]), "notes.txt").kind == "pdf"  # type: ignore[union-attr]
    assert sniff(image_bytes(["x"], "PNG"), "a.jpg").kind == "png"  # type: ignore[union-attr]
    assert sniff(image_bytes(["x"], "JPEG"), "a.png").kind == "jpeg"  # type: ignore[union-attr]
    assert sniff(docx_bytes(), "a.zip").kind == "docx"  # type: ignore[union-attr]
    assert sniff(b"# Title\n", "readme.md").kind == "markdown"  # type: ignore[union-attr]
    assert sniff(b"# Title\n", "readme", "text/markdown; charset=utf-8").kind == "markdown"  # type: ignore[union-attr]
    assert sniff("caf\u00e9".encode("latin-1"), "a.txt").kind == "text"  # type: ignore[union-attr]
    assert sniff(EXE, "report.pdf", "application/pdf") is None
    assert sniff(b"PK\x03\x04" + b"\x00" * 100, "a.docx") is None  # a zip that is no Word document
    assert sniff(b"GIF89a\x01\x00\x01\x00\x00\x00\x00", "a.gif") is None


def test_filenames_are_sanitised() -> None:
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\Users\\me\\report.pdf") == "report.pdf"
    assert safe_filename("evil\u202egpj.exe\x00\n") == "evilgpj.exe"
    assert safe_filename("...hidden") == "hidden"
    assert safe_filename("", ".pdf") == "file.pdf"
    long = safe_filename("x" * 300 + ".docx")
    assert len(long) == 200 and long.endswith(".docx")


def test_long_texts_come_in_parts() -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 200 for i in range(60))
    parts = split_parts(text, 12_000)
    assert len(parts) > 1 and all(len(p) <= 12_000 for p in parts)
    assert all(p.startswith("Paragraph") for p in parts)  # cut at paragraph ends
    assert " ".join(" ".join(parts).split()) == " ".join(text.split())
    assert split_parts("") == [""]


# --- the intake: real files, real extraction --------------------------------------------------------------


async def test_text_pdf_keeps_pages(intake: FileIntake, alice: UserRecord) -> None:
    data = text_pdf([["Quarterly harvest report", "Pumpkins exceeded forecasts"], ["Second page: apples"]])
    record = await intake.ingest(alice.id, "report.pdf", data, claimed_type="application/octet-stream")
    assert (record.status, record.pages, record.media_type, record.error) == ("ready", 2, "application/pdf", None)
    text = await intake.text(alice.id, record.id)
    assert words_in(text, "quarterly harvest report", "pumpkins exceeded forecasts", "apples")
    assert "--- page 2 ---" in text
    stored = intake.root / str(alice.id) / f"{record.id}.pdf"
    assert stored.read_bytes() == data
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert not [p for p in stored.parent.iterdir() if p.name.startswith(".upload-")]


async def test_scanned_pdf_is_read_by_ocr(intake: FileIntake, alice: UserRecord) -> None:
    record = await intake.ingest(alice.id, "scan.pdf", scanned_pdf(["Meridian lighthouse", "Invoice total"]))
    assert (record.status, record.pages) == ("ready", 1)
    assert words_in(await intake.text(alice.id, record.id), "meridian", "lighthouse", "invoice")


async def test_mixed_pdf_ocrs_only_the_pages_without_text(intake: FileIntake, alice: UserRecord) -> None:
    data = merged_pdf(text_pdf([["Typed page about walruses"]]), scanned_pdf(["Scanned page about otters"]))
    record = await intake.ingest(alice.id, "mixed.pdf", data)
    text = await intake.text(alice.id, record.id)
    assert record.pages == 2
    first, second = text.split("--- page 2 ---")
    assert words_in(first, "walruses") and words_in(second, "otters")


async def test_docx_paragraphs_and_tables(intake: FileIntake, alice: UserRecord) -> None:
    record = await intake.ingest(alice.id, "plan.docx", docx_bytes())
    text = await intake.text(alice.id, record.id)
    assert record.status == "ready" and record.pages is None
    assert "Lighthouse maintenance plan" in text and "every Tuesday" in text
    assert "Fresnel lens | 4200" in text
    assert text.index("every Tuesday") < text.index("Fresnel") < text.index("harbour board")  # document order


@pytest.mark.parametrize(("name", "data", "media_type"), [
    ("notes.txt", "Grocery list: saffron, \u00e9clairs".encode(), "text/plain"),
    ("notes.md", b"# Weekly plan\n\n* call the **plumber**\n", "text/markdown"),
    ("old.txt", "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e".encode("cp1252"), "text/plain"),
])
async def test_text_and_markdown(intake: FileIntake, alice: UserRecord, name: str, data: bytes,
                                 media_type: str) -> None:
    record = await intake.ingest(alice.id, name, data)
    assert (record.status, record.media_type) == ("ready", media_type)
    assert await intake.text(alice.id, record.id) == data.decode("utf-8" if name != "old.txt" else "cp1252").strip()


@pytest.mark.parametrize("kind", ["PNG", "JPEG"])
async def test_images_are_read_by_ocr(intake: FileIntake, alice: UserRecord, kind: str) -> None:
    record = await intake.ingest(alice.id, f"photo.{kind.lower()}", image_bytes(["Harbour master", "Tide table"],
                                                                              kind))
    assert (record.status, record.pages) == ("ready", 1)
    assert words_in(await intake.text(alice.id, record.id), "harbour", "master", "tide", "table")


async def test_encrypted_pdf_fails_clearly_but_is_kept(intake: FileIntake, alice: UserRecord) -> None:
    record = await intake.ingest(alice.id, "locked.pdf", encrypted_pdf(text_pdf([["Secret plans"]]), "s3cret"))
    assert record.status == "failed"
    assert record.error is not None and "password" in record.error
    assert (intake.root / record.path).exists()
    assert [f.id for f in await intake.list(alice.id)] == [record.id]
    with pytest.raises(InvalidRequest) as caught:
        await intake.text(alice.id, record.id)
    assert caught.value.code == "no_text" and "password" in caught.value.user_message


async def test_pdf_with_an_empty_user_password_is_read(intake: FileIntake, alice: UserRecord) -> None:
    document = encrypted_pdf(text_pdf([["Open sesame, said the owner"]]), "")
    record = await intake.ingest(alice.id, "restricted.pdf", document)
    assert record.status == "ready"
    assert "Open sesame, said the owner" in await intake.text(alice.id, record.id)


async def test_damaged_pdf_fails_clearly(intake: FileIntake, alice: UserRecord) -> None:
    record = await intake.ingest(alice.id, "broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog" + b"\x8f" * 500)
    assert record.status == "failed"
    assert record.error == "This PDF could not be read: it looks damaged."


async def test_image_without_words_fails_clearly(intake: FileIntake, alice: UserRecord) -> None:
    blank = io.BytesIO()
    Image.new("L", (200, 100), 255).save(blank, "PNG")
    record = await intake.ingest(alice.id, "blank.png", blank.getvalue())
    assert (record.status, record.error) == ("failed", "No text could be found in this file.")


async def test_refusals_leave_nothing_behind(db: Database, tmp_path: Path, alice: UserRecord,
                                             bob: UserRecord) -> None:
    intake = FileIntake(FileRepository(db, PlainTextCodec()), tmp_path / "files", max_bytes=4096)
    for name, data, code in (("report.pdf", EXE, "unsupported_type"), ("empty.txt", b"", "empty"),
                             ("big.txt", b"a" * 4097, "too_large")):
        with pytest.raises(InvalidRequest) as caught:
            await intake.ingest(alice.id, name, data, claimed_type="application/pdf")
        assert caught.value.code == code
    assert "PDF, Word (DOCX), plain text, Markdown, PNG and JPEG" in str(
        (await _refusal(intake, alice.id, EXE)).user_message)
    # a file that cannot be recorded (bob's conversation) is removed again
    conversation = await ConversationRepository(db, PlainTextCodec()).create_conversation(bob.id, "api")
    with pytest.raises(NotFound):
        await intake.ingest(alice.id, "a.txt", b"hello", conversation_id=conversation.id)
    assert await intake.list(alice.id) == []
    assert not any(p.is_file() for p in (tmp_path / "files").rglob("*"))


async def _refusal(intake: FileIntake, user_id: int, data: bytes) -> InvalidRequest:
    try:
        await intake.ingest(user_id, "x.pdf", data)
    except InvalidRequest as exc:
        return exc
    raise AssertionError("not refused")


async def test_limits_on_pages_text_and_time(db: Database, tmp_path: Path, alice: UserRecord) -> None:
    repository = FileRepository(db, PlainTextCodec())
    small = FileIntake(repository, tmp_path / "files", limits=ExtractionLimits(max_pages=2, max_chars=300))
    pages = [["page one of the report"], ["page two of the report"], ["page three of the report"]]
    record = await small.ingest(alice.id, "three.pdf", text_pdf(pages))
    text = await small.text(alice.id, record.id)
    assert record.pages == 3 and "only the first 2 of 3 pages were read" in text and "page three" not in text
    long = await small.ingest(alice.id, "long.txt", ("line of text\n" * 100).encode())
    assert "the text was cut here" in await small.text(alice.id, long.id)

    hasty = FileIntake(repository, tmp_path / "files", limits=ExtractionLimits(timeout=0.001))
    slow = await hasty.ingest(alice.id, "scan.pdf", scanned_pdf(["Too slow"]))
    assert (slow.status, slow.error) == ("failed", "Reading this file took too long.")


async def test_delete_removes_row_and_bytes(intake: FileIntake, alice: UserRecord, bob: UserRecord) -> None:
    record = await intake.ingest(alice.id, "notes.txt", b"remember the milk")
    stored = intake.root / record.path
    assert stored.exists()
    with pytest.raises(NotFound):
        await intake.delete(bob.id, record.id)
    assert stored.exists()
    await intake.delete(alice.id, record.id)
    assert not stored.exists()
    assert await intake.list(alice.id) == []
    with pytest.raises(NotFound):
        await intake.delete(alice.id, record.id)


# --- the skill ----------------------------------------------------------------------------------------------


def context_for(db: Database, intake: FileIntake, user: UserRecord) -> SkillContext:
    factory = ContextFactory(SkillRepository(db, PlainTextCodec()), None, intake, None)
    return factory.build(skill="files", actor=Actor(user.id, user.name), conversation_id="c" * 32, channel="api",
                         config={}, capabilities=FilesSkill.permissions)


async def call(skill: FilesSkill, intent_name: str, params: dict[str, object], context: SkillContext):  # type: ignore[no-untyped-def]
    spec = FilesSkill.intents()[intent_name]
    return await invoke(InProcess(skill), "files", spec, "call-1", f"files__{intent_name}", params, context)


async def test_skill_lists_reads_and_describes(db: Database, intake: FileIntake, alice: UserRecord,
                                               bob: UserRecord) -> None:
    skill = FilesSkill(intake)
    context = context_for(db, intake, alice)
    empty = await call(skill, "list_files", {}, context)
    assert "haven't sent me any files" in empty.display

    report = await intake.ingest(alice.id, "report.pdf", text_pdf([["Quarterly harvest report"]]))
    long = "\n\n".join(f"Section {i}: " + "lorem ipsum " * 150 for i in range(30))
    notes = await intake.ingest(alice.id, "notes.md", long.encode())

    listed = await call(skill, "list_files", {}, context)
    assert listed.display.index("notes.md") < listed.display.index("report.pdf")
    assert report.id[:8] in listed.display

    latest = await call(skill, "read_file", {}, context)  # the latest file, first part
    assert not latest.is_error and "part 1 of" in latest.display
    assert '"more"' in latest.content and "part=2" in latest.content
    second = await call(skill, "read_file", {"file": notes.id[:6], "part": 2}, context)
    assert "notes.md — part 2 of" in second.display
    by_name = await call(skill, "read_file", {"file": "REPORT"}, context)
    assert "Quarterly harvest report" in by_name.display and "part 1 of 1" in by_name.display
    page = await call(skill, "read_file", {"file": "report.pdf", "page": 1}, context)
    assert "Quarterly harvest report" in page.display and "--- page" not in page.display
    no_page = await call(skill, "read_file", {"file": "report.pdf", "page": 9}, context)
    assert no_page.is_error and "has no page 9" in no_page.content
    too_far = await call(skill, "read_file", {"file": "report.pdf", "part": 5}, context)
    assert too_far.is_error and too_far.error_code == "no_part"

    info = await call(skill, "file_info", {"file": report.id}, context)
    assert "report.pdf: PDF" in info.display and "1 page" in info.display

    # bob sees none of alice's files, by id or by name
    bobs = context_for(db, intake, bob)
    for params in ({"file": report.id}, {"file": "report.pdf"}):
        refused = await call(skill, "read_file", params, bobs)
        assert refused.is_error and refused.error_code == "not_found"

    locked = await intake.ingest(alice.id, "locked.pdf", encrypted_pdf(text_pdf([["x"]]), "pw"))
    unreadable = await call(skill, "read_file", {"file": locked.id}, context)
    assert unreadable.is_error and "password" in unreadable.content


async def test_skill_context_files_capability(db: Database, intake: FileIntake, alice: UserRecord) -> None:
    record = await intake.ingest(alice.id, "notes.txt", b"buy saffron")
    files = context_for(db, intake, alice).files
    assert await files.text(record.id) == "buy saffron"
    recent = await files.recent(5)
    assert [(r["id"], r["name"], r["media_type"], r["size"]) for r in recent] == [
        (record.id, "notes.txt", "text/plain", 11)]


def test_intents_are_matched_and_described_for_the_model() -> None:
    matcher = Matcher()
    matcher.load({"files": FilesSkill.intents()})
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    for sentence, wanted in (("what files did I send", "list_files"), ("list my files", "list_files"),
                             ("read part 2 of report.pdf", "read_file")):
        candidate = matcher.match(sentence, tz=UTC, now=now)
        assert candidate is not None and candidate.intent.name == wanted, sentence
    read = FilesSkill.intents()["read_file"]
    assert read.description.startswith("Read the text of a file the user sent, to summarise it or answer questions")
    assert FilesSkill.permissions == ("files",) and FilesSkill.name == "files"
