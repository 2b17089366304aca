"""Grading a class: `grade` (batch), the exporters (Gradescope, GitHub Classroom, CSV), the
Gradescope autograder, nbgrader, and the class report. The command line calls into this
package; nothing here imports the command line.
"""
