"""One writer per file (edge.files): a second writer is refused in one line, the lock goes with
its holder, and a folder where no lock can be made does not stop the writer."""

import pytest

from edge.errors import DeviceUnavailableError
from edge.files import FileInUse, WriterLock, lock_path


def test_a_second_writer_is_refused_until_the_first_lets_go(tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # as root no folder is made (below)
    path = tmp_path / "new" / "decisions.jsonl"  # its folder is made, as the writer would
    first = WriterLock(path, setting="log.file", fix="give this run its own log.file")
    assert first.held and lock_path(path).exists() and not path.exists()
    with pytest.raises(FileInUse) as refused:
        WriterLock(path, setting="log.file", fix="give this run its own log.file")
    message = str(refused.value)
    assert isinstance(refused.value, DeviceUnavailableError)  # busy: exit 75, one line
    assert message.startswith(f"log.file {path} is in use") and "\n" not in message
    assert message.endswith("give this run its own log.file")
    first.close()
    with WriterLock(path, setting="log.file", fix="") as again:
        assert again.held
    assert not again.held


def test_another_file_in_the_same_folder_is_not_locked(tmp_path):
    with WriterLock(tmp_path / "a.json", setting="adapt.state_file", fix=""):
        assert WriterLock(tmp_path / "b.json", setting="adapt.state_file", fix="").held


def test_where_no_lock_can_be_made_the_writer_goes_on_unlocked(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    lock = WriterLock(tmp_path / "file" / "state.json", setting="adapt.state_file", fix="")
    assert not lock.held
    lock.close()


def test_two_names_of_one_file_share_its_lock(tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # links are the user's own
    real = tmp_path / "state.json"
    (tmp_path / "alias.json").symlink_to(real)
    with WriterLock(real, setting="adapt.state_file", fix=""):
        with pytest.raises(FileInUse):
            WriterLock(tmp_path / "alias.json", setting="adapt.state_file", fix="")


def test_a_lock_file_that_is_a_link_is_not_followed(tmp_path):
    """The service's user could plant .NAME.lock -> /etc/nologin for root to create."""
    target = tmp_path / "nologin"
    lock_path(tmp_path / "s.json").symlink_to(target)
    assert not WriterLock(tmp_path / "s.json", setting="adapt.state_file", fix="").held
    assert not target.exists()


def test_root_makes_no_folder_for_a_lock(tmp_path):
    """As root, a lock's missing folder is not made: the folder's owner is checked first
    (adapt.state_file in the service's folder), and root made it before the check."""
    import os

    if os.geteuid() != 0:
        pytest.skip("root only")
    lock = WriterLock(tmp_path / "new" / "s.json", setting="adapt.state_file", fix="")
    assert not lock.held and not (tmp_path / "new").exists()


@pytest.mark.parametrize("name", [".", "/", ".."])
def test_a_path_that_names_a_folder_gets_no_error(name, tmp_path, monkeypatch):
    """adapt.state_file = "." raised ValueError (an internal error) before the writer could say
    that it names a folder."""
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    WriterLock(name, setting="adapt.state_file", fix="").close()
