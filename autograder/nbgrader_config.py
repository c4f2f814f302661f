"""nbgrader configuration for the course.

The course directory is the repository root: ``solutions/`` holds the source
notebooks and ``exercises/`` the release that students receive. Run nbgrader
from the repository root with ``--config=autograder/nbgrader_config.py``
(the README lists the commands). The grading pipeline in
``autograder.pipeline`` points the same configuration at a temporary course
directory with ``--CourseDirectory.*`` options.
"""

import os

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

repository_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

c.CourseDirectory.course_id = "bn-from-scratch"
c.CourseDirectory.root = repository_root
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(repository_root, "gradebook.db")

# A notebook gets three minutes (a correct one runs in well under one); a
# student's infinite loop then costs that notebook its points, not the run.
c.ExecutePreprocessor.timeout = 180
c.Execute.timeout = 180

# What a student sees in place of the reference solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Students may not hand in a notebook whose test cells were edited.
c.Autograde.create_student = True
