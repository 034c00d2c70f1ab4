"""autograder: self-check, release, classroom grading and mutation testing for the course."""
