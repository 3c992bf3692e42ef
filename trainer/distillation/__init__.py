"""Distillation: a student trained on targets mixed from the labels and its teachers.

``distill`` mixes the targets and opens the teachers; a teacher is either an exported
version of our own, run by OpenVINO (``teacher_runtime``), or an expression model from
outside FER2013 on faces aligned by YuNet's landmarks, its answers cached
(``face_teacher``).
"""
