"""The teacher's view of the student's sequences (another tokenizer): its tokens spell the same text, and every
aligned pair of positions has read the same bytes — so both predict the same next text."""

import torch

from kdlab.data.lm import byte_level_bpe, encode_lm
from kdlab.data.lm.cross import byte_widths, cross_view, take_cross, token_bytes


def test_aligned_positions_have_read_the_same_bytes(corpus, bpe):
    teacher_bpe = byte_level_bpe(corpus.train.documents, 1000, name="stdlib")  # another size: another tokenizer
    tokens = encode_lm(corpus.val.subset(range(3)), bpe, max_length=64, prompt_length=8)
    view = cross_view(tokens, bpe, teacher_bpe, 80)
    student_bytes, teacher_bytes = token_bytes(bpe), token_bytes(teacher_bpe)
    assert (view.aligned > 0).all() and (view.teacher.lengths <= 80).all()
    for i in range(len(tokens)):
        s_ids, t_ids = tokens.input_ids[i], view.teacher.input_ids[i]
        s_ends = student_bytes[s_ids[: tokens.lengths[i]]].cumsum(0)
        t_ends = teacher_bytes[t_ids[: view.teacher.lengths[i]]].cumsum(0)
        first = tokens.prompt_lengths[i] - 1
        for m in range(int(view.aligned[i])):
            sp, tp = int(view.student_positions[i, m]), int(view.teacher_positions[i, m])
            assert sp >= first  # only positions that predict a trained token
            # from the first aligned pair on, both sides have read the same number of bytes at every pair
            s_read = int(s_ends[sp]) - int(s_ends[int(view.student_positions[i, 0])])
            t_read = int(t_ends[tp]) - int(t_ends[int(view.teacher_positions[i, 0])])
            assert s_read == t_read, (i, m)
    part = take_cross(view, torch.tensor([2, 0]))
    assert torch.equal(part.aligned, view.aligned[[2, 0]])


def test_identical_tokenizers_align_one_to_one(corpus, bpe):
    tokens = encode_lm(corpus.val.subset(range(2)), bpe, max_length=32)
    view = cross_view(tokens, bpe, bpe, 32)
    for i in range(2):
        n = int(view.aligned[i])
        assert torch.equal(view.student_positions[i, :n], view.teacher_positions[i, :n])
        empty = int((token_bytes(bpe)[tokens.input_ids[i, : tokens.lengths[i]]] == 0).sum())  # end-of-text tokens
        assert n == int(tokens.lengths[i]) - 1 - empty


def test_byte_widths_of_a_byte_level_tokenizer(bpe):
    widths = byte_widths(bpe)
    assert widths is not None and widths[bpe.eos_token_id] == 0
    text = "def f(x):\n    return 'é'\n"
    ids = bpe(text, add_special_tokens=False)["input_ids"]
    assert int(widths[ids].sum()) == len(text.encode())
