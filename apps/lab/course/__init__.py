"""The course: `course.md` and `course.html` over every axis a lab folder holds, its questions answered from the
numbers. The map: apps/lab/__init__.py."""
