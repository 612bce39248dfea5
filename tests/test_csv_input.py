"""mqp.csv_input: a user's CSV read a chunk of rows at a time, rows numbered across chunks, and
search's batch mode checking a large file to its last line before it searches."""

import pytest

from mqp.commands.search import check_queries_csv
from mqp.csv_input import blank_rows, csv_chunks, rows_text
from mqp.errors import PipelineError


def test_chunks_number_their_rows_across_the_file(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("question_1,question_2\n" + "".join(f"q{i},r{i}\n" for i in range(7)) + ",r7\n")
    chunks = list(csv_chunks(str(path), 3))
    assert [(first, len(chunk)) for first, chunk in chunks] == [(1, 3), (4, 3), (7, 2)]
    assert chunks[2][1]["question_1"].tolist() == ["q6", ""]  # empty cells stay '' (not NaN)
    assert blank_rows(chunks[2][1], ["question_1", "question_2"], chunks[2][0]) == [8]
    assert rows_text(list(range(1, 13))) == "row(s) 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 ..."


def test_search_checks_a_large_csv_to_its_last_row_first(tmp_path):
    """30,000 queries in chunks of 10,000: the empty one in the last line is named, and a third
    field there is the parser's one line, before any query is searched."""
    good = "question,topic\n" + "".join(f"What is question {i}?,flu\n" for i in range(30_000))
    (tmp_path / "blank.csv").write_text(good + "   ,flu\n")
    (tmp_path / "extra.csv").write_text(good + "a,b,c\n")
    with pytest.raises(PipelineError, match=r"blank.csv: row\(s\) 30001 have an empty question"):
        check_queries_csv(str(tmp_path / "blank.csv"))
    with pytest.raises(PipelineError, match=r"cannot read .*extra.csv: Error tokenizing data. C error: Expected 2 fields "
                                            r"in line 30002, saw 3"):
        check_queries_csv(str(tmp_path / "extra.csv"))
    (tmp_path / "good.csv").write_text(good)
    assert check_queries_csv(str(tmp_path / "good.csv")) == 30_000
