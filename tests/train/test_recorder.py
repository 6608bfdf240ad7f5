"""The resumable row log (read_rows / append_row) and config_changes of jaxcnn.train.recorder."""

import json

import pytest

from jaxcnn.train import recorder


def test_config_changes_lists_each_dotted_field():
  saved = {"lr": 0.1, "opt": {"name": "sgd", "momentum": 0.9}, "gone": 1}
  now = {"lr": 0.2, "opt": {"name": "sgd", "momentum": 0.8}, "new": (1, 2)}
  assert recorder.config_changes(saved, now) == [
      "gone: 1 -> (unset)", "lr: 0.1 -> 0.2", "new: (unset) -> (1, 2)",
      "opt.momentum: 0.9 -> 0.8"]
  assert recorder.config_changes(saved, saved) == []


def test_rows_come_back_in_order_and_a_tuple_recipe_equals_its_json_list(tmp_path):
  path = tmp_path / "sub" / "log.jsonl"
  recipe = {"epochs": 5, "augment": ("crop", "flip"), "optimizer": {"lr": 0.1}}
  assert recorder.read_rows(path, recipe) == []
  recorder.append_row(path, recipe, {"label": "a", "acc": 0.5})
  recorder.append_row(path, recipe, {"label": "b", "acc": 0.25})
  lines = path.read_text().splitlines()
  assert json.loads(lines[0]) == {"recipe": {"epochs": 5, "augment": ["crop", "flip"],
                                             "optimizer": {"lr": 0.1}}}
  assert recorder.read_rows(path, recipe) == [{"label": "a", "acc": 0.5},
                                              {"label": "b", "acc": 0.25}]
  with pytest.raises(ValueError, match=r"differs in: optimizer.lr: 0.1 -> 0.2\. "):
    recorder.read_rows(path, dict(recipe, optimizer={"lr": 0.2}))
  # Killed while writing a row: that row is dropped and the next append follows the last whole one.
  with path.open("a") as f:
    f.write('{"label": "c", "ac')
  assert [r["label"] for r in recorder.read_rows(path, recipe)] == ["a", "b"]
  recorder.append_row(path, recipe, {"label": "c", "acc": 0.75})
  assert [r["label"] for r in recorder.read_rows(path, recipe)] == ["a", "b", "c"]
  path.write_text(lines[0] + "\n" + "oops\n" + lines[1] + "\n")
  with pytest.raises(ValueError, match=r"log\.jsonl, line 2, is not a row: 'oops"):
    recorder.read_rows(path, recipe)
  path.write_text("[1, 2]\n")
  with pytest.raises(ValueError, match="is not a study log"):
    recorder.read_rows(path, recipe, what="study log")
